"""The ``edgesplit`` command line. Errors in user input print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import sys

from edgesplit.errors import InputError


def _solve(args) -> int:
    from edgesplit.scenario_file import fixed_prices, read_scenario, solution_to_json
    from edgesplit.schemes import Scheme
    from edgesplit.solve import solve, solve_at_prices

    parsed = read_scenario(args.scenario)
    scheme = Scheme.parse(args.scheme)
    if args.fixed_prices:
        price_crb, price_rrb = fixed_prices(parsed)
        solution = solve_at_prices(parsed.scenario, scheme, price_crb, price_rrb, parsed.settings)
    else:
        solution = solve(parsed.scenario, scheme, parsed.settings)
    json.dump(solution_to_json(solution), sys.stdout, indent=2)
    print()
    return 0


def _defaults(args) -> int:
    from edgesplit.config import defaults_markdown

    print(defaults_markdown())
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="edgesplit", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    solve = commands.add_parser("solve", help="solve one scenario file and print JSON")
    solve.add_argument("scenario", help="scenario JSON file")
    solve.add_argument(
        "--scheme", default="proposed", choices=["proposed", "edge_only", "heuristic", "user_only"]
    )
    solve.add_argument(
        "--fixed-prices", action="store_true",
        help="skip the price game: devices respond to the prices in the file",
    )  # fmt: skip
    solve.set_defaults(run=_solve)

    defaults = commands.add_parser("defaults", help="print every default parameter and its source")
    defaults.set_defaults(run=_defaults)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import jax

    # Single solves and their reference checks run in float64.
    jax.config.update("jax_enable_x64", True)
    try:
        return args.run(args)
    except InputError as err:
        print(f"edgesplit: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0


if __name__ == "__main__":
    sys.exit(main())
