# Release notes build configuration (reno + Sphinx).
extensions = ['reno.sphinxext']
source_suffix = '.rst'
master_doc = 'index'
project = 'nova-vtpm-migration Release Notes'
copyright = '2026, The nova-vtpm-migration Authors'
html_theme = 'alabaster'
