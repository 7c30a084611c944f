"""The coordinator: a Raft cluster whose replicated state is the chain registry."""
