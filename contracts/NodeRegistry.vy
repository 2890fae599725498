# pragma version ~=0.4.3
"""
@title NodeRegistry
@notice The on-chain list of Noderr nodes: node id -> operator wallet and an active flag.
        Only the registrar (the control plane's signer) adds and removes nodes; the owner can
        hand the registrar role to another address.
        A node id is the platform's id ("node_" + 16 hex) as ASCII, right-padded to bytes32.
"""

event NodeRegistered:
    node_id: indexed(bytes32)
    operator: indexed(address)

event NodeDeregistered:
    node_id: indexed(bytes32)
    operator: indexed(address)

event RegistrarChanged:
    previous: indexed(address)
    current: indexed(address)

struct NodeRecord:
    operator: address
    active: bool
    registered_at: uint256
    deregistered_at: uint256

owner: public(address)
registrar: public(address)
nodes: public(HashMap[bytes32, NodeRecord])
active_nodes: public(uint256)


@deploy
def __init__(registrar_: address):
    assert registrar_ != empty(address), "registrar is the zero address"
    self.owner = msg.sender
    self.registrar = registrar_


@external
def register_node(node_id: bytes32, operator: address):
    assert msg.sender == self.registrar, "only registrar"
    assert operator != empty(address), "operator is the zero address"
    assert not self.nodes[node_id].active, "node already registered"
    self.nodes[node_id] = NodeRecord(
        operator=operator, active=True, registered_at=block.timestamp, deregistered_at=0
    )
    self.active_nodes += 1
    log NodeRegistered(node_id=node_id, operator=operator)


@external
def deregister_node(node_id: bytes32):
    assert msg.sender == self.registrar, "only registrar"
    assert self.nodes[node_id].active, "node not registered"
    self.nodes[node_id].active = False
    self.nodes[node_id].deregistered_at = block.timestamp
    self.active_nodes -= 1
    log NodeDeregistered(node_id=node_id, operator=self.nodes[node_id].operator)


@view
@external
def is_active(node_id: bytes32) -> bool:
    return self.nodes[node_id].active


@view
@external
def operator_of(node_id: bytes32) -> address:
    return self.nodes[node_id].operator


@external
def set_registrar(new_registrar: address):
    assert msg.sender == self.owner, "only owner"
    assert new_registrar != empty(address), "registrar is the zero address"
    log RegistrarChanged(previous=self.registrar, current=new_registrar)
    self.registrar = new_registrar
