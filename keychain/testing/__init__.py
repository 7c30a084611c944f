"""Tools for proving KeychainDB correct: the linearizability checker and the deterministic simulator."""
