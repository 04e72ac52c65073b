# Copyright 2026 The nova-vtpm-migration Authors
#
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""X.509 certificates for QEMU's native TLS migration between daemons.

:class:`MigrationTlsCA` is a test CA (RSA, made with ``cryptography``,
kept in memory) that writes the files libvirt's ``qemu.conf``
``migrate_tls_x509_cert_dir`` expects for one host (see libvirt's
``kbase/tlscerts``): ``ca-cert.pem``, ``server-cert.pem`` and
``server-key.pem`` (the destination side, its subject alternative name
the host's name: the source QEMU checks it against the host name of the
migration URI), ``client-cert.pem`` and ``client-key.pem`` (the source
side; the destination verifies it with ``migrate_tls_x509_verify``).
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=1)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                           'nova-vtpm-migration tests'),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False,
        key_encipherment=not ca, data_encipherment=False,
        key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


class MigrationTlsCA:
    """A CA issuing each host's migration server and client certificates.
    """

    def __init__(self) -> None:
        self._key = _key()
        now = datetime.datetime.now(datetime.UTC)
        name = _name('nova-vtpm-migration test migration CA')
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                           critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(self._key, hashes.SHA256()))

    def _issue(self, common_name: str, dns_names: list[str],
               purpose: x509.ObjectIdentifier
               ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False))
        if dns_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in dns_names]), critical=False)
        return builder.sign(self._key, hashes.SHA256()), key

    def write_host_files(self, cert_dir: str, hostname: str,
                         server_name: str | None = None) -> None:
        """Write the certificate directory of host *hostname*.

        :param server_name: the name the server certificate is for
            (default: *hostname*); another name makes the sources refuse
            this host as a migration destination.
        """
        os.makedirs(cert_dir, mode=0o700, exist_ok=True)
        server_name = server_name or hostname
        server, server_key = self._issue(server_name, [server_name],
                                         ExtendedKeyUsageOID.SERVER_AUTH)
        client, client_key = self._issue(hostname, [hostname],
                                         ExtendedKeyUsageOID.CLIENT_AUTH)
        pem = serialization.Encoding.PEM
        files = {'ca-cert.pem': self.cert.public_bytes(pem),
                 'server-cert.pem': server.public_bytes(pem),
                 'server-key.pem': _pem_key(server_key),
                 'client-cert.pem': client.public_bytes(pem),
                 'client-key.pem': _pem_key(client_key)}
        for name, data in files.items():
            path = os.path.join(cert_dir, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600 if name.endswith('-key.pem') else 0o644)
            with os.fdopen(fd, 'wb') as f:
                f.write(data)


def server_name(cert_dir: str) -> str:
    """The DNS name the server certificate in *cert_dir* is for."""
    with open(os.path.join(cert_dir, 'server-cert.pem'), 'rb') as f:
        cert = x509.load_pem_x509_certificate(f.read())
    names = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return ', '.join(names)
