"""Compiling the Vyper contracts in `contracts/` with the installed `vyper` package.

No compiler is downloaded: the `vyper` wheel pinned in pyproject.toml is the compiler. Output is
cached per process (keyed by the source text), so a test session or a deploy compiles each
contract once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from noderr_core.settings import PROJECT_ROOT

CONTRACTS_DIR = PROJECT_ROOT / "contracts"
# Ganache 7.9's newest hardfork; the bytecode also runs on later forks (eth-tester, Base).
EVM_VERSION = "shanghai"
CONTRACT_NAMES = ("NodeRegistry", "RewardDistributor", "RewardToken", "Stake")


@dataclass(frozen=True)
class CompiledContract:
    name: str
    abi: list[dict]
    bytecode: str  # 0x-prefixed deploy bytecode
    source_sha256: str


def contract_source(name: str) -> str:
    path = CONTRACTS_DIR / f"{name}.vy"
    if not path.exists():
        raise FileNotFoundError(f"contract source {path} is missing")
    return path.read_text()


def compile_contract(name: str) -> CompiledContract:
    source = contract_source(name)
    return _compile(name, source)


@lru_cache(maxsize=16)
def _compile(name: str, source: str) -> CompiledContract:
    import vyper
    from vyper.compiler.settings import Settings as VyperSettings

    out = vyper.compile_code(
        source,
        contract_path=str(Path(CONTRACTS_DIR / f"{name}.vy")),
        output_formats=["abi", "bytecode"],
        settings=VyperSettings(evm_version=EVM_VERSION),
    )
    return CompiledContract(
        name=name,
        abi=out["abi"],
        bytecode=out["bytecode"],
        source_sha256=hashlib.sha256(source.encode()).hexdigest(),
    )


def abi_of(name: str) -> list[dict]:
    return compile_contract(name).abi
