"""
Side-by-side benchmarks of mailsrv and a reference Postfix+Dovecot stack on
the same machine; run with C{python -m bench} (see C{bench/README.md}).
"""
