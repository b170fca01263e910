// Package membership keeps a gossip view of a shoal network's members with
// failure detection, without a coordinator: SWIM with Lifeguard's
// refinements, over libp2p streams, with state changes disseminated over
// gossipsub.
//
// Failure detection. Each protocol period a node probes one member,
// round-robin over a shuffled list: a direct ping over /shoal/swim/1.0.0;
// if no ack comes within the probe timeout, a ping-req through
// IndirectChecks other members, which ping the target themselves. A member
// that none of them reached is suspected. The suspicion timeout starts at
// SuspicionMaxMult times the base SuspicionMult·log10(N)·period and
// shrinks towards the base as independent suspicions of the same member
// arrive (Lifeguard); when it expires the member is declared dead. A
// suspected member that is alive refutes by announcing itself with a
// higher incarnation number.
//
// Self-awareness (Lifeguard). A node that misses acks it should have had,
// or has to refute suspicions of itself, raises its local health score;
// its probe interval and timeout are multiplied by score+1 up to
// AwarenessMax, so a slow node widens its timeouts instead of accusing
// healthy members.
//
// Dissemination. Changes (alive, suspect, dead, left, metadata) are
// published on shoal/<network>/members. Gossipsub signs every message, so
// its author is known: only a member speaks for its own alive and left
// states and metadata; any member may report suspect or dead. The newer
// incarnation wins; at equal incarnation dead and left beat suspect,
// which beats alive. A member starts at the time in nanoseconds as its
// incarnation, so that one that left or crashed and comes back with the
// same peer ID is alive again at once; it refutes a claim that it left,
// like a suspicion, while it runs.
//
// Anti-entropy. On join and every SyncInterval a node exchanges its full
// view with one random member over /shoal/sync/1.0.0 (push-pull), so what
// gossip dropped is repaired and a newcomer learns the whole view at once.
// It sometimes picks a member it believes dead, which is how the two sides
// of a healed partition find each other again.
//
// Events. Subscribe returns a channel of changes; a slow reader loses
// events (counted), it never blocks the protocol.
package membership
