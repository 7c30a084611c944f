"""CRAQ chain node: the pure replication core, RocksDB storage and the gRPC shell."""
