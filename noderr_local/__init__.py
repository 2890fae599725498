"""The local stack: processes that stand in for production parts on loopback.

`process` (supervision) at the bottom; then `postgres`, `mailbox`, `seaweed`, `devchain`; then
`stack`, which composes them for `noderr dev up`, the demo, the tests and the benchmarks.
Imports only the core's settings and storage/chain clients; nothing in the core imports it.
"""
