"""Where bytes come from: files, gzip streams, captures, sockets, kernel rings."""
