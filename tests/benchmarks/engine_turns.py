"""What one turn costs as a conversation grows: the seed library and convoflow, side by side.

    .venv/bin/python tests/benchmarks/engine_turns.py [--quick]

The seed library (dialogs-framework 0.2.1 from PyPI) is installed into `.bench-venv/` on first
use and measured in a subprocess of that venv; convoflow's engine is measured in this process.
Both play the same guessing game (a recorded draw, then "Higher!"/"Lower!" for every guess; the
guesses never hit, so the game goes on), written in the same code against each library's API:

  (a) loop      the seed's way: `while True` in the top dialog, each guess from get_client_response
  (b) goto      each round ends with `yield goto(next_round(...))` (convoflow only)
  (c) subdialog each round is a subdialog returning whether the guess won

For each history length N (turns already played) it reports the median cost of the next turn:
  mem    a state object already in memory, rebuilt from stored data (no JSON text): the turn
         replays the whole record (for the seed, its best case)
  cold   JSON text in, the turn, JSON text out: what the seed does for every turn, and what
         convoflow does after a restart or on another replica
  warm   convoflow only: the suspended dialog kept in memory takes the turn (what the Engine does
         between turns), including serialising the new state to JSON text, as every commit does
and the size of the stored state as JSON text.

The target figure (the loop at 3,000 turns, every turn replayed from JSON text, against the seed's
best case) is then measured again in interleaved rounds: a seed process kept running and this one
take turns, one batch each per round, so the machine's speed, which drifts on a shared host, moves
both sides of each round's ratio alike (`--rounds N`, 9 by default).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
SEED_VENV = ROOT / ".bench-venv"
SEED_REQUIREMENTS = ["dialogs-framework==0.2.1", "typing_extensions"]
LENGTHS = [10, 100, 1000, 3000]
ROUNDS = 9
"""Interleaved rounds of the target figure."""
SECRET = 7
GUESSES = [str(n) for n in range(1, 11) if n != SECRET]


def define_flows(api: ModuleType) -> dict[str, Callable[[], Any]]:
    """The guessing game, written once against the API both libraries share."""
    dialog, send_message, get_client_response = api.dialog, api.send_message, api.get_client_response

    def hint(guess: int, secret: int) -> str:
        return "Higher!" if guess < secret else "Lower!"

    @dialog()
    def draw_secret() -> int:
        return SECRET  # a recorded step, as a random draw would be

    @dialog()
    def loop():
        yield send_message("Guess a number between 1 and 10.")
        secret = yield draw_secret()
        while True:
            guess = int((yield get_client_response()))
            if guess == secret:
                yield send_message("You got it!")
                return guess
            yield send_message(hint(guess, secret))

    @dialog()
    def one_round(secret: int):
        guess = int((yield get_client_response()))
        yield send_message("You got it!" if guess == secret else hint(guess, secret))
        return guess == secret

    @dialog()
    def subdialog():
        yield send_message("Guess a number between 1 and 10.")
        secret = yield draw_secret()
        while True:
            won = yield one_round(secret)
            if won:
                return True

    flows: dict[str, Callable[[], Any]] = {"loop": loop, "subdialog": subdialog}
    goto = getattr(api, "goto", None)
    if goto is not None:

        @dialog()
        def next_round(secret: int, guesses: int):
            guess = int((yield get_client_response()))
            if guess == secret:
                yield send_message("You got it!")
                return guesses + 1
            yield send_message(hint(guess, secret))
            yield goto(next_round(secret, guesses + 1))

        @dialog()
        def goto_rounds():
            yield send_message("Guess a number between 1 and 10.")
            secret = yield draw_secret()
            yield goto(next_round(secret, 0))

        flows["goto"] = goto_rounds
    return flows


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


def repetitions(length: int, quick: bool) -> int:
    return 3 if quick else (25 if length <= 100 else 15 if length <= 1000 else 9)


def timed(run: Callable[[], Any]) -> int:
    """CPU nanoseconds of `run()`: on a shared machine, time spent waiting for a core is not the
    turn's cost (both libraries are measured alike, each single-threaded)."""
    gc.collect()
    started = time.process_time_ns()
    run()
    return time.process_time_ns() - started


def played(api: ModuleType, flow: Callable[[], Any], length: int) -> Any:
    """A persistence whose conversation has had `length` turns (after its opening)."""
    persistence = api.InMemoryPersistence()
    api.run_gen_dialog(flow(), persistence, "hi")
    for n in range(length):
        api.run_gen_dialog(flow(), persistence, GUESSES[n % len(GUESSES)])
    return persistence


def loop_turns(api: ModuleType, to_dict: Callable[[Any], Any], length: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """The next turn of the loop at `length` turns: cold (JSON text in and out) and from a state
    already in memory (rebuilt from stored data before the clock starts), each a fresh turn."""
    flow = define_flows(api)["loop"]
    text = json.dumps(to_dict(played(api, flow, length).state))
    guess = GUESSES[length % len(GUESSES)]

    def cold() -> None:
        loaded = api.InMemoryPersistence(api.state_from_dict(json.loads(text)))
        api.run_gen_dialog(flow(), loaded, guess)
        json.dumps(to_dict(loaded.state))

    def in_memory() -> None:
        kept = api.InMemoryPersistence(api.state_from_dict(json.loads(text)))
        started = time.process_time_ns()
        api.run_gen_dialog(flow(), kept, guess)
        in_memory.ns = time.process_time_ns() - started  # type: ignore[attr-defined]

    return cold, in_memory


def batch_us(run: Callable[[], None], reps: int, own_clock: bool = False) -> float:
    """The median CPU time (us) of `reps` runs; `own_clock`: `run` times itself (its `ns`)."""
    samples = []
    for _ in range(reps):
        spent = timed(run)
        samples.append(run.ns if own_clock else spent)  # type: ignore[attr-defined]
    return median_us(samples)


def measure(api: ModuleType, to_dict: Callable[[Any], Any], lengths: list[int], quick: bool, warm: bool) -> dict[str, Any]:
    """Per flow and history length: median turn costs (us) and the state's size (bytes)."""
    results: dict[str, Any] = {}
    for name, flow in define_flows(api).items():
        persistence = api.InMemoryPersistence()
        api.run_gen_dialog(flow(), persistence, "hi")
        played = 0
        rows = {}
        for length in lengths:
            while played < length:
                api.run_gen_dialog(flow(), persistence, GUESSES[played % len(GUESSES)])
                played += 1
            text = json.dumps(to_dict(persistence.state))
            guess = GUESSES[played % len(GUESSES)]
            row: dict[str, Any] = {"bytes": len(text.encode())}

            def cold() -> None:
                loaded = api.InMemoryPersistence(api.state_from_dict(json.loads(text)))
                api.run_gen_dialog(flow(), loaded, guess)
                json.dumps(to_dict(loaded.state))

            row["cold"] = median_us([timed(cold) for _ in range(repetitions(length, quick))])

            in_memory_samples = []
            for _ in range(repetitions(length, quick)):
                kept = api.InMemoryPersistence(api.state_from_dict(json.loads(text)))
                in_memory_samples.append(timed(lambda: api.run_gen_dialog(flow(), kept, guess)))
            row["in_memory"] = median_us(in_memory_samples)

            if warm:  # the live dialog takes the next turns, its state serialised each time
                samples = []
                for _ in range(repetitions(length, quick)):
                    next_guess = GUESSES[played % len(GUESSES)]

                    def turn() -> None:
                        api.run_gen_dialog(flow(), persistence, next_guess)
                        json.dumps(to_dict(persistence.state))

                    samples.append(timed(turn))
                    played += 1
                row["warm"] = median_us(samples)
            rows[length] = row
        results[name] = rows
    return results


# --- the seed, in its own venv ----------------------------------------------------------------------

def seed_main(lengths: list[int], quick: bool) -> None:
    """Runs inside .bench-venv: measure the seed library and print the results as JSON."""
    import dialogs_framework

    print(json.dumps(measure(dialogs_framework, dataclasses.asdict, lengths, quick, warm=False)))


def seed_worker(length: int, reps: int) -> None:
    """Runs inside .bench-venv: for each line on stdin, one batch of the seed's best-case turn of
    the loop at `length` turns; prints its median (us) a line."""
    import dialogs_framework

    _, in_memory = loop_turns(dialogs_framework, dataclasses.asdict, length)
    print("ready", flush=True)
    for _ in sys.stdin:
        print(batch_us(in_memory, reps, own_clock=True), flush=True)


def interleaved(length: int, rounds: int, reps: int) -> list[tuple[float, float]]:
    """`rounds` pairs (the seed's best case, convoflow cold), in us, measured turn about."""
    import convoflow

    worker = subprocess.Popen([str(seed_python()), __file__, "--seed-worker", str(length), str(reps)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert worker.stdin is not None and worker.stdout is not None
    try:
        cold, _ = loop_turns(convoflow, lambda state: state.to_dict(), length)
        if worker.stdout.readline().strip() != "ready":
            sys.exit("the seed worker did not start")
        pairs = []
        for _ in range(rounds):
            worker.stdin.write("batch\n")
            worker.stdin.flush()
            theirs = float(worker.stdout.readline())
            pairs.append((theirs, batch_us(cold, reps)))
        return pairs
    finally:
        worker.stdin.close()
        worker.wait(30)


def seed_python() -> Path:
    python = SEED_VENV / "bin" / "python"
    probe = [str(python), "-c", "import dialogs_framework"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing {' '.join(SEED_REQUIREMENTS)} into {SEED_VENV.relative_to(ROOT)}/ ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(SEED_VENV)], check=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *SEED_REQUIREMENTS], capture_output=True, text=True
    )
    if install.returncode != 0:
        sys.exit(f"could not install the seed library:\n{install.stdout}{install.stderr}")
    return python


def measure_seed(lengths: list[int], quick: bool) -> dict[str, Any]:
    args = [str(seed_python()), __file__, "--seed", json.dumps(lengths)] + (["--quick"] if quick else [])
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"the seed measurement failed:\n{done.stderr}")
    results: dict[str, Any] = json.loads(done.stdout)
    return {flow: {int(length): row for length, row in rows.items()} for flow, rows in results.items()}


# --- the report -------------------------------------------------------------------------------------

def report(seed: dict[str, Any], ours: dict[str, Any], lengths: list[int]) -> None:
    titles = {"loop": "(a) loop: while True at the top", "goto": "(b) goto per round", "subdialog": "(c) subdialog per round"}
    header = (
        f"{'turns':>6} | {'seed mem':>9} {'seed cold':>10} | {'mem':>7} {'cold':>7} {'warm':>6} | "
        f"{'mem ratio':>9} {'cold ratio':>10} | {'seed state':>10} {'state':>7}"
    )
    for flow in ["loop", "goto", "subdialog"]:
        print(f"\n{titles[flow]}   (median us per turn; ratio = seed / convoflow; state = JSON bytes)")
        print(header)
        print("-" * len(header))
        for length in lengths:
            mine, theirs = ours[flow][length], seed.get(flow, {}).get(length)
            if theirs:
                seed_cells = f"{theirs['in_memory']:>9.0f} {theirs['cold']:>10.0f}"
                ratios = f"{theirs['in_memory'] / mine['in_memory']:>8.1f}x {theirs['cold'] / mine['cold']:>9.1f}x"
                seed_size = f"{theirs['bytes']:>10,}"
            else:
                seed_cells, ratios, seed_size = f"{'n/a':>9} {'n/a':>10}", f"{'':>9} {'':>10}", f"{'n/a':>10}"
            print(
                f"{length:>6,} | {seed_cells} | {mine['in_memory']:>7.0f} {mine['cold']:>7.0f} {mine['warm']:>6.0f} | "
                f"{ratios} | {seed_size} {mine['bytes']:>7,}"
            )

    first, last = lengths[0], lengths[-1]
    print(f"\ntargets at {last:,} turns:")
    loop_seed, loop_ours = seed["loop"][last], ours["loop"][last]
    cold_ratio = loop_seed["cold"] / loop_ours["cold"]
    print(
        f"  (a) loop: a cold turn {cold_ratio:.1f}x faster than the seed's (target 5x): "
        f"{'met' if cold_ratio >= 5 else 'MISSED'}; replaying from a state already in memory "
        f"{loop_seed['in_memory'] / loop_ours['in_memory']:.1f}x; kept warm "
        f"{loop_seed['cold'] / loop_ours['warm']:.0f}x"
    )
    best_case = loop_seed["in_memory"] / loop_ours["cold"]
    print(
        f"  (a) loop, every turn replayed from JSON text: {best_case:.2f}x the seed's best case (its state "
        f"already in memory; target 2x), in this one pass: the interleaved rounds below decide"
    )
    for flow, label in [("goto", "b"), ("subdialog", "c")]:
        rows = ours[flow]
        warm_growth = rows[last]["warm"] / rows[first]["warm"]
        cold_growth = rows[last]["cold"] / rows[first]["cold"]
        size = rows[last]["bytes"]
        print(
            f"  ({label}) {flow}: a turn at {last:,} turns costs {warm_growth:.2f}x one at {first} kept warm, "
            f"{cold_growth:.2f}x cold (target 1.5x: warm {'met' if warm_growth <= 1.5 else 'MISSED'}, "
            f"cold {'met' if cold_growth <= 1.5 else 'MISSED'}); state {size:,} bytes "
            f"(target < 4,096: {'met' if size < 4096 else 'MISSED'})"
        )


def main() -> None:
    quick = "--quick" in sys.argv
    if "--seed" in sys.argv:
        seed_main(json.loads(sys.argv[sys.argv.index("--seed") + 1]), quick)
        return
    if "--seed-worker" in sys.argv:
        at = sys.argv.index("--seed-worker")
        seed_worker(int(sys.argv[at + 1]), int(sys.argv[at + 2]))
        return
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else ROUNDS
    lengths = LENGTHS[:2] if quick else LENGTHS
    sys.path.insert(0, str(ROOT))
    import convoflow

    print(f"python {sys.version.split()[0]}; history lengths {lengths}; measuring the seed ...", flush=True)
    started = time.perf_counter()
    seed = measure_seed(lengths, quick)
    print(f"... {time.perf_counter() - started:.0f} s; measuring convoflow ...", flush=True)
    ours = measure(convoflow, lambda state: state.to_dict(), lengths, quick, warm=True)
    report(seed, ours, lengths)

    last = lengths[-1]
    print(f"\n(a) loop at {last:,} turns, every turn replayed from JSON text, against the seed's best case, "
          f"in {rounds} interleaved rounds:", flush=True)
    pairs = interleaved(last, rounds, repetitions(last, quick))
    ratios = [theirs / mine for theirs, mine in pairs]
    for n, ((theirs, mine), ratio) in enumerate(zip(pairs, ratios), 1):
        print(f"  round {n}: seed {theirs:,.0f} us, convoflow {mine:,.0f} us: {ratio:.2f}x")
    middle = statistics.median(ratios)
    print(f"  median {middle:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x; target 2x): {'met' if middle >= 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
