"""A Caselle source simulator: realistic source databases, at any size, that change like the real thing.

Create a community's source in a SQLite file, a PostgreSQL or a MariaDB
database, evolve it, and read back what changed::

    from caselle_sim import SourceSpec, create_source
    sim = create_source(SourceSpec.from_url("sqlite:////tmp/springfield.db"), preset="tiny", seed=1)
    changes = sim.evolve(timedelta(minutes=15))

See docs/simulator.md for the rules the data follows.
"""

from .changes import ChangeSet, TableChanges
from .engines import SourceSpec
from .presets import PRESETS, Preset, Rates
from .simulator import Simulator, create_source, open_source

__all__ = ["PRESETS", "ChangeSet", "Preset", "Rates", "Simulator", "SourceSpec", "TableChanges", "create_source",
           "open_source"]
