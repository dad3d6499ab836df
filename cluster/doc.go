// Package cluster is where the protoactor-go cluster and hashicorp/memberlist
// membership will live: placing identities (reg/..., call/...) on nodes and
// moving them to survivors when a node dies. It holds no code yet: a node
// runs alone, and this folder keeps the design's layout in place.
package cluster
