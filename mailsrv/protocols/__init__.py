"""Wire protocols. Modules here talk to the interfaces in L{mailsrv.interfaces} only."""
