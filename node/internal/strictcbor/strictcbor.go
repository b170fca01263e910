// Package strictcbor holds the CBOR modes of the node's signed control
// messages (tokens, revocations, the token exchange, catalog entries,
// member updates): canonical encoding, so that a signature covers one
// byte string, and a strict decoder with every size bounded, since each of
// them comes from the network.
package strictcbor

import "github.com/fxamacker/cbor/v2"

// Enc encodes canonically (RFC 8949 core deterministic encoding).
var Enc = func() cbor.EncMode {
	em, err := cbor.CanonicalEncOptions().EncMode()
	if err != nil {
		panic(err) // constant options
	}
	return em
}()

// Dec returns a decoder that rejects duplicate map keys, unknown fields
// and indefinite lengths, and accepts at most nesting levels of nesting,
// arrays of at most elems elements and maps of at most 16 pairs.
func Dec(nesting, elems int) cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   nesting,
		MaxArrayElements:  elems,
		MaxMapPairs:       16,
		IndefLength:       cbor.IndefLengthForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err) // callers pass constants within the library's bounds
	}
	return dm
}
