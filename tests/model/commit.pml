/*
 * Copyright 2026 The nova-vtpm-migration Authors
 *
 *    Licensed under the Apache License, Version 2.0 (the "License"); you may
 *    not use this file except in compliance with the License. You may obtain
 *    a copy of the License at
 *
 *         http://www.apache.org/licenses/LICENSE-2.0
 *
 *    Unless required by applicable law or agreed to in writing, software
 *    distributed under the License is distributed on an "AS IS" BASIS,
 *    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 *    See the License for the specific language governing permissions and
 *    limitations under the License.
 *
 * Promela model of the commit / abort / recovery protocol of one vTPM live
 * migration (doc/source/contributor/architecture.rst, "Commit protocol").
 * Checked by tests/integration/test_spin_model.py:
 *
 *   spin -a commit.pml
 *   gcc -O2 -DSAFETY -DNOCLAIM -o pan pan.c && ./pan -m100000     (safety)
 *   gcc -O2 -o pan pan.c && ./pan -a -f -N resolves -m100000      (liveness)
 *
 * What is modelled
 * ----------------
 * - S (source) and D (destination) processes with the journal states of the
 *   contract, each journal write one atomic durable step (write + fsync).
 * - Key custody per host: ACTIVE (usable), LOCKED (S, while migrating),
 *   PENDING (D, unwrapped and sealed but not usable), NONE (destroyed or
 *   never held). Custody is durable (key files / sealed blobs on disk).
 * - A network that loses, duplicates and delays messages (bounded), and
 *   drops a message when a queue is full.
 * - Crash and restart of either process between any two steps (bounded):
 *   journal state and key custody survive, volatile state (what was sent,
 *   which acknowledgements arrived, poll counters) is lost; messages in
 *   flight stay in the network (their loss is modelled separately).
 * - Nova's hand-over of the guest ("switched": instance.host = D) which
 *   only S's live process performs, in TRANSFERRED, and which is
 *   irreversible (fenced: it cannot complete while S is down or
 *   recovering; see ENV_ASYNC_HANDOVER).
 * - The outcome oracle S asks when it recovers in TRANSFERRING or
 *   TRANSFERRED (under Nova: the instance's host of record): it may be
 *   unavailable (bounded, S retries) and otherwise answers consistently with
 *   "switched".
 * - Nondeterministic failures before the commit decision: attestation
 *   refused, RPC timeouts, libvirt migration failure, reservation timeout.
 * Phase 1 (attestation) and the cryptography are abstracted to one step;
 * they are covered by the Python tests.
 *
 * State mapping (model name -> code state, architecture.rst names)
 * -----------------------------------------------------------------
 *   model            code (journal record)           key custody in model
 *   S_NEW            source NEW                      s_key ACTIVE
 *   S_ATTESTED       source ATTESTED                 s_key ACTIVE
 *   S_PREPARED       source PREPARED                 s_key ACTIVE
 *   S_TRANSFERRING   source TRANSFERRING             s_key ACTIVE -> LOCKED
 *   S_TRANSFERRED    source TRANSFERRED              s_key LOCKED
 *   S_COMMITTING     source COMMITTING               s_key LOCKED -> NONE
 *   S_COMMITTED      source COMMITTED                s_key NONE (destroyed)
 *   S_ABORTING       source ABORTING                 s_key LOCKED -> ACTIVE
 *   S_ABORTED        source ABORTED                  s_key ACTIVE
 *   D_NONE           destination: no journal record  d_key NONE
 *   D_RESERVED       destination RESERVED            d_key NONE
 *   D_INSTALLED      destination INSTALLED           d_key PENDING (sealed)
 *   D_COMMITTED      destination COMMITTED           d_key ACTIVE
 *   D_ABORTED        destination ABORTED             d_key NONE (destroyed)
 *   ACTIVE/LOCKED/PENDING/NONE   key custody ACTIVE / LOCKED / PENDING /
 *                                none (destroyed or absent)
 *   message names    protocol messages prepare, prepare_reply, transfer,
 *                    transfer_reply, commit, commit_reply, abort,
 *                    abort_reply, status, status_reply (architecture.rst);
 *                    *_NACK = an error reply (refused).
 *
 * Properties
 * ----------
 * Safety (assertions in the Invariants process, checked in every state):
 *   never two usable keys; never zero keys (the instance's key destroyed
 *   everywhere); a usable key only where the guest runs; once both sides
 *   are resolved exactly one ACTIVE key and both agree on the outcome.
 * Liveness (LTL "resolves", weak fairness, bounded faults): eventually both
 *   sides are resolved for good.
 *
 * Mutants (each must make the checker report an error; see the test):
 *   -DMUTANT_EARLY_DESTROY     S destroys its key when D reports INSTALLED,
 *                              before the commit decision is journaled.
 *   -DMUTANT_D_PRESUME_COMMIT  D recovering in INSTALLED activates its key
 *                              without asking S.
 *   -DMUTANT_PRESUMED_ABORT    S recovering in TRANSFERRING/TRANSFERRED with
 *                              the oracle unavailable presumes abort.
 *   -DMUTANT_NO_RESEND         S sends commit/abort once per incarnation
 *                              instead of until acknowledged (liveness).
 * Environment assumption shown necessary the same way:
 *   -DENV_ASYNC_HANDOVER       the hand-over may complete while S is down or
 *                              recovering (not fenced): the oracle's answer
 *                              can be stale by the time S journals it.
 */

#ifndef MAX_CRASH
#define MAX_CRASH 2           /* crashes of S and D together */
#endif
#ifndef MAX_LOSS
#define MAX_LOSS 1            /* messages lost by the network */
#endif
#ifndef MAX_DUP
#define MAX_DUP 1             /* messages duplicated by the network */
#endif
#ifndef MAX_ORACLE_FAIL
#define MAX_ORACLE_FAIL 1     /* outcome oracle unavailable */
#endif
#ifndef MAX_POLL
#define MAX_POLL 2            /* status polls by D per incarnation */
#endif
#ifndef QSIZE
#define QSIZE 2               /* capacity of each direction's queue */
#endif

mtype = {
    /* key custody */
    ACTIVE, LOCKED, PENDING, NONE,
    /* source journal states */
    S_NEW, S_ATTESTED, S_PREPARED, S_TRANSFERRING, S_TRANSFERRED,
    S_COMMITTING, S_COMMITTED, S_ABORTING, S_ABORTED,
    /* destination journal states */
    D_NONE, D_RESERVED, D_INSTALLED, D_COMMITTED, D_ABORTED,
    /* messages */
    PREPARE, PREPARE_REPLY, PREPARE_NACK, TRANSFER, TRANSFER_REPLY,
    TRANSFER_NACK, COMMIT, COMMIT_ACK, ABORT, ABORT_ACK, STATUS,
    ST_COMMIT, ST_ABORT, ST_UNKNOWN
};

/* durable state: journals and key custody */
mtype s_state = S_NEW;
mtype s_key = ACTIVE;
mtype d_state = D_NONE;
mtype d_key = NONE;
/* the guest has been handed over to D (instance.host = D); irreversible */
bool switched = false;

/* the network */
chan to_d = [QSIZE] of { mtype };
chan to_s = [QSIZE] of { mtype };

/* fault budget and fault injection */
byte crashes = 0;
byte losses = 0;
byte dups = 0;
byte oracle_fails = 0;
bool s_crash = false;
bool d_crash = false;

#define s_final (s_state == S_COMMITTED || s_state == S_ABORTED)
#define d_final (d_state == D_COMMITTED || d_state == D_ABORTED || \
                 d_state == D_NONE)
#define resolved (s_final && d_final)

#define two_active (s_key == ACTIVE && d_key == ACTIVE)
#define zero_keys (s_key == NONE && d_key == NONE)
#define key_follows_guest ((d_key != ACTIVE || switched) && \
                           (s_key != ACTIVE || !switched))
#define exactly_one ((s_key == ACTIVE) != (d_key == ACTIVE))
#define agree ((s_state == S_COMMITTED) == (d_state == D_COMMITTED))
#define safe (!two_active && !zero_keys && key_follows_guest && \
              (!resolved || (exactly_one && agree)))

/* S (re-)sends commit/abort when it has not sent it in this incarnation
 * or when nothing arrived for it (a timeout). */
#ifdef MUTANT_NO_RESEND
#define RESEND_OK (!sent)
#else
#define RESEND_OK (!sent || empty(to_s))
#endif

/* Send over the lossy, duplicating network; never blocks. */
inline send(ch, m) {
    atomic {
        if
        :: nfull(ch) -> ch!m
        :: losses < MAX_LOSS -> losses++             /* lost */
        :: dups < MAX_DUP && len(ch) + 2 <= QSIZE ->
            dups++; ch!m; ch!m                       /* duplicated */
        :: full(ch) -> skip                          /* queue full: dropped */
        fi
    }
}

active proctype Source() {
    mtype m;
    bool sent = false;       /* volatile: current request sent */
    bool acked = false;      /* volatile: commit/abort acknowledged */
    bool restarted = false;

start:
    sent = false;
    acked = false;
    {
        /* Recovery at start (architecture.rst: "Recovery at start"). */
        if
        :: restarted && (s_state == S_NEW || s_state == S_ATTESTED ||
                         s_state == S_PREPARED) ->
            s_state = S_ABORTING
        :: restarted && (s_state == S_TRANSFERRING ||
                         s_state == S_TRANSFERRED) ->
            /* ask the outcome oracle until it answers */
            do
            :: switched -> s_state = S_COMMITTING; break
            :: !switched -> s_state = S_ABORTING; break
            :: oracle_fails < MAX_ORACLE_FAIL ->
                oracle_fails++;
#ifdef MUTANT_PRESUMED_ABORT
                s_state = S_ABORTING; break
#else
                skip                                 /* unavailable: retry */
#endif
            od
        :: else -> skip      /* COMMITTING/ABORTING: re-send below */
        fi;

end_serve:
        do
        /* phase 1, abstracted: attestation passes or is refused */
        :: s_state == S_NEW -> s_state = S_ATTESTED
        :: s_state == S_NEW -> s_state = S_ABORTING

        /* phase 2 */
        :: s_state == S_ATTESTED && !sent -> send(to_d, PREPARE); sent = true
        :: s_state == S_PREPARED -> s_state = S_TRANSFERRING; sent = false
        :: s_state == S_TRANSFERRING && s_key == ACTIVE -> s_key = LOCKED
        :: s_state == S_TRANSFERRING && s_key == LOCKED && !sent ->
            send(to_d, TRANSFER); sent = true

        /* timeouts, refusals, failures before the decision: abort */
        :: s_state == S_ATTESTED || s_state == S_PREPARED ||
           s_state == S_TRANSFERRING ->
            s_state = S_ABORTING; sent = false

        /* phase 3: Nova migrates the guest, then S decides */
        :: s_state == S_TRANSFERRED && !switched ->
            assert(d_state == D_INSTALLED);  /* guest resumes only where
                                                the key is installed */
            switched = true
        :: s_state == S_TRANSFERRED && !switched ->   /* migration failed */
            s_state = S_ABORTING; sent = false
        :: s_state == S_TRANSFERRED && switched ->
            s_state = S_COMMITTING; sent = false

        /* commit: re-send until acknowledged, then destroy the key */
        :: s_state == S_COMMITTING && !acked && RESEND_OK ->
            send(to_d, COMMIT); sent = true
        :: s_state == S_COMMITTING && acked && s_key != NONE ->
            s_key = NONE
        :: s_state == S_COMMITTING && acked && s_key == NONE ->
            s_state = S_COMMITTED

        /* abort: re-send until acknowledged, then unlock the key */
        :: s_state == S_ABORTING && !acked && RESEND_OK ->
            send(to_d, ABORT); sent = true
        :: s_state == S_ABORTING && acked && s_key == LOCKED ->
            s_key = ACTIVE
        :: s_state == S_ABORTING && acked && s_key != LOCKED ->
            s_state = S_ABORTED

        /* replies and requests from D; anything else is stale: dropped */
        :: to_s?m ->
            if
            :: m == PREPARE_REPLY && s_state == S_ATTESTED ->
                s_state = S_PREPARED
            :: m == PREPARE_NACK && s_state == S_ATTESTED ->
                s_state = S_ABORTING; sent = false
            :: m == TRANSFER_REPLY && s_state == S_TRANSFERRING &&
               s_key == LOCKED ->
#ifdef MUTANT_EARLY_DESTROY
                s_key = NONE;
#endif
                s_state = S_TRANSFERRED
            :: m == TRANSFER_NACK && s_state == S_TRANSFERRING ->
                s_state = S_ABORTING; sent = false
            :: m == COMMIT_ACK && s_state == S_COMMITTING -> acked = true
            :: m == ABORT_ACK && s_state == S_ABORTING -> acked = true
            :: m == STATUS ->
                if
                :: s_state == S_COMMITTING || s_state == S_COMMITTED ->
                    send(to_d, ST_COMMIT)
                :: s_state == S_ABORTING || s_state == S_ABORTED ->
                    send(to_d, ST_ABORT)
                :: else -> send(to_d, ST_UNKNOWN)
                fi
            :: else -> skip
            fi
        od
    } unless {
        atomic { s_crash -> s_crash = false; restarted = true }
    };
    goto start
}

active proctype Dest() {
    mtype m;
    byte polls = 0;          /* volatile: status polls this incarnation */
    bool restarted = false;

start:
    polls = 0;
    {
        if
        :: restarted && d_state == D_RESERVED ->
            d_key = NONE; d_state = D_ABORTED
        :: restarted && d_state == D_INSTALLED ->
#ifdef MUTANT_D_PRESUME_COMMIT
            d_key = ACTIVE; d_state = D_COMMITTED
#else
            skip             /* asks S below (status) */
#endif
        :: else -> skip
        fi;

end_serve:
        do
        /* D in INSTALLED after a restart asks S for the outcome */
        :: restarted && d_state == D_INSTALLED && polls < MAX_POLL &&
           empty(to_d) ->
            send(to_s, STATUS); polls++

        /* the reservation times out */
        :: d_state == D_RESERVED -> d_key = NONE; d_state = D_ABORTED

        :: to_d?m ->
            if
            :: m == PREPARE ->
                if
                :: d_state == D_NONE ->
                    d_state = D_RESERVED; send(to_s, PREPARE_REPLY)
                :: d_state == D_RESERVED -> send(to_s, PREPARE_REPLY)
                :: d_state == D_ABORTED -> send(to_s, PREPARE_NACK)
                :: else -> skip
                fi
            :: m == TRANSFER ->
                if
                :: d_state == D_RESERVED ->
                    d_key = PENDING;         /* unwrap in TPM, seal */
                    d_state = D_INSTALLED;   /* journal */
                    send(to_s, TRANSFER_REPLY)
                :: d_state == D_INSTALLED -> send(to_s, TRANSFER_REPLY)
                :: d_state == D_NONE || d_state == D_ABORTED ->
                    send(to_s, TRANSFER_NACK)
                :: else -> skip
                fi
            :: m == COMMIT || m == ST_COMMIT ->
                assert(d_state == D_INSTALLED || d_state == D_COMMITTED);
                if
                :: d_state == D_INSTALLED ->
                    d_key = ACTIVE;
                    d_state = D_COMMITTED
                :: else -> skip
                fi;
                if
                :: m == COMMIT -> send(to_s, COMMIT_ACK)
                :: else -> skip
                fi
            :: m == ABORT || m == ST_ABORT ->
                assert(d_state != D_COMMITTED);
                if
                :: d_state != D_ABORTED && d_state != D_COMMITTED ->
                    d_key = NONE;            /* destroy what was received */
                    d_state = D_ABORTED
                :: else -> skip
                fi;
                if
                :: m == ABORT -> send(to_s, ABORT_ACK)
                :: else -> skip
                fi
            :: else -> skip                  /* ST_UNKNOWN, stale */
            fi
        od
    } unless {
        atomic { d_crash -> d_crash = false; restarted = true }
    };
    goto start
}

#ifdef ENV_ASYNC_HANDOVER
/* Environment variant: the hand-over is completed by another actor (for
 * example an RPC to D that is already in flight) and can therefore happen
 * while S is down or recovering. The checker finds the race between S's
 * oracle query and this hand-over; the default model assumes the hand-over
 * is fenced (only S's live process performs it). */
active proctype Handover() {
end_handover:
    atomic {
        s_state == S_TRANSFERRED && d_state == D_INSTALLED && !switched ->
            switched = true
    }
}
#endif

/* Crash and restart of either process, at any point (bounded). The
 * crasher may also retire: otherwise weak fairness would force it to use
 * its whole budget, and a crash could hide a liveness violation. */
active proctype Crasher() {
end_idle:
    do
    :: crashes < MAX_CRASH && !s_crash && !d_crash ->
        atomic { crashes++; s_crash = true }
    :: crashes < MAX_CRASH && !s_crash && !d_crash ->
        atomic { crashes++; d_crash = true }
    :: crashes < MAX_CRASH -> crashes = MAX_CRASH     /* retire */
    od
}

/* Safety: checked in every reachable state. */
active proctype Invariants() {
end_watch:
    atomic {
        !safe ->
            assert(!two_active);
            assert(!zero_keys);
            assert(key_follows_guest);
            assert(!resolved || exactly_one);
            assert(!resolved || agree)
    }
}

/* Time passes when nothing else can happen, so that a state in which S
 * and D wait for ever is a cycle of the checked system rather than a
 * deadlock (pan's stutter extension does not combine well with -f). */
active proctype Clock() {
end_tick:
    do
    :: timeout -> skip
    od
}

/* Liveness: with bounded faults and weak fairness, both sides end
 * resolved and stay resolved. */
ltl resolves { <> [] resolved }
