//! An in-process fake of the Kubernetes API server, for tests. Filled in by the fake API server work.
