"""Fixtures for the simulator's unit tests: every test gets its own SQLite source in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from caselle_sim import Simulator, SourceSpec, create_source


@pytest.fixture
def new_source(tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    """Factory: new_source(name="src", **create_source kwargs) -> an open Simulator on a fresh SQLite file."""
    made: list[Simulator] = []

    def factory(name: str = "src", **kwargs) -> Simulator:
        kwargs.setdefault("preset", "tiny")
        sim = create_source(SourceSpec.from_url(f"sqlite:///{tmp_path / name}.db"), **kwargs)
        made.append(sim)
        return sim

    yield factory
    for sim in made:
        sim.close()
        sim.spec.drop()


@pytest.fixture
def tiny(new_source: Callable[..., Simulator]) -> Simulator:
    """A fresh tiny source (seed 1, default clock 2026-11-02 08:00 America/Denver)."""
    return new_source()
