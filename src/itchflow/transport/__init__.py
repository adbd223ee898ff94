"""Transport framings, sans-I/O: pcap/pcapng captures, MoldUDP64, SoupBinTCP."""
