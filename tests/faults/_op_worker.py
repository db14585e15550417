"""Worker for the operation-store fault test:
``python -m tests.faults._op_worker PATH SEED N [DURABILITY]``.

Applies ``N`` deterministic operations (see :func:`operate`) to the store at PATH, printing
``A i`` once operation ``i`` returned (each is committed on return), then ``END``.
"""

from __future__ import annotations

import random
import sys


def operate(store, seed: int, i: int) -> None:
    """Operation ``i`` of run ``seed``, on a store or on a plain dict (the same effect)."""
    rng = random.Random(seed * 100_003 + i)
    losses, runs = store["losses"], store["runs"]
    choice = rng.randrange(6)
    if choice <= 1:
        losses.append(rng.random())
    elif choice == 2 and losses:
        losses.pop(rng.randrange(-len(losses), len(losses)))
    elif choice == 3:
        runs.insert(rng.randrange(-3, 4), {"id": i, "tags": {i % 5}})
    elif choice == 4 and runs:
        runs[rng.randrange(-len(runs), len(runs))]["tags"].add(i)
    else:
        store[f"k{i % 7}"] = ("x" * rng.randrange(2000), i)


def reference(seed: int, count: int) -> dict:
    state: dict = {"losses": [], "runs": []}
    for i in range(count):
        operate(state, seed, i)
    return state


def main(path: str, seed: int, count: int, durability: str = "flush") -> None:
    from klepto.logs import open_store

    initial = {"losses": [], "runs": []}
    store = open_store(path, "w", initial_data=initial, durability=durability)
    for i in range(count):
        operate(store, seed, i)
        sys.stdout.write(f"A {i}\n")
        sys.stdout.flush()
    store.close()
    sys.stdout.write("END\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
