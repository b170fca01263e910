// Package api is the daemon's local control API: HTTP/JSON served on the
// unix socket <home>/api.sock (mode 0600), and the one typed Go client the
// CLI uses. Long operations (share, fetch) answer with a stream of NDJSON
// events, one JSON object per line, ending with a "done" or an "error"
// event, so a client shows progress as it comes.
//
// Endpoints:
//
//	GET    /v1/status          Status
//	GET    /v1/peers           []node.PeerInfo
//	GET    /v1/catalog         []catalog.Entry
//	GET    /v1/shares          []transfer.ShareInfo
//	POST   /v1/share           ShareRequest  -> NDJSON Event stream
//	POST   /v1/fetch           FetchRequest  -> NDJSON Event stream
//	DELETE /v1/shares/{root}   unshare
//	POST   /v1/connect         ConnectRequest
//	GET    /v1/members         []membership.Member
//	GET    /v1/members/watch   NDJSON stream of membership.Event
//	POST   /v1/token           TokenRequest -> TokenInfo
//	POST   /v1/revoke          TokenRequest -> TokenInfo
//
// and the content gateway for plain HTTP clients (gateway.go):
//
//	GET    /content/{root}/{path...}   a file, with Range; a directory
//	                                   as HTML, or Listing as JSON
//
// Errors are JSON {"error": "...", "code": "..."}; the client turns the
// codes back into the sentinel errors of node and transfer, so callers
// branch with errors.Is whether they run a node in-process or talk to a
// daemon.
package api
