"""The chain: Vyper contracts, the web3.py client, deployment and the outbox handler of chain rows.

Modules:
  contracts   compile contracts/*.vy with the `vyper` package (no downloaded compiler)
  client      web3.py connection + signer: nonce management, receipts, revert reasons
  addresses   the deployed contract addresses file (settings.resolved_chain_addresses_file)
  deploy      deploy the registry, distributor (and a local reward token) and record addresses
  relay       ChainHandler: executes OutboxKind.CHAIN rows against the contracts, once per key
"""
