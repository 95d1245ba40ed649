"""Every rule's first admission passes, made from a game's table of offers, against the
direct market's first pass at the same prices (every device best-responding to every
block free, then admission), on random small games where capacities bind: the
certificate's and best_response's moves, enumerate's profiles, and the table's rows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from conftest import tiny_problem
from edgesplit import reference
from edgesplit.config import GameSettings
from edgesplit.game import grid, offers, profiles
from edgesplit.game.admission import admission_pass, admitting, open_market
from edgesplit.game.market import responder, server_sales
from edgesplit.io.scenario_file import parse_scenario
from edgesplit.model.scenario import pad_scenario
from edgesplit.model.schemes import scheme_options

SCHEMES = (reference.PROPOSED, reference.EDGE_ONLY, reference.HEURISTIC)
LEVELS = 18  # every grid below: max_price 4.0 / step 0.25 + 2
SETTINGS = GameSettings(leader="best_response", price_levels=LEVELS)


def binding_game(rng, case):
    """6 devices on two servers of 2-5 CRBs and RRBs: most markets refuse someone."""
    problem = tiny_problem(rng, num_devices=6, price_step=(0.25, 0.5), max_price=(2.0, 4.0))
    for server in problem["servers"]:
        server.update(crbs=int(rng.integers(2, 6)), rrbs=int(rng.integers(2, 6)))
    scenario = pad_scenario(parse_scenario(problem).scenario, 6, 2, 3)
    return scenario, scheme_options(scenario, jnp.int32(SCHEMES[case % 3]))


def direct(scenario, options, price_crb, price_rrb):
    """The direct market's first pass at these prices: settled, each server's utility
    (eq. 11), the devices' choices and the blocks left."""
    respond = responder(scenario, options, SETTINGS, price_crb, price_rrb)
    first = admission_pass(scenario, price_crb, price_rrb, respond, open_market(scenario))
    value = server_sales(scenario, first.choice, price_crb, price_rrb)[0]
    return ~admitting(scenario, first), value, first


@jax.jit
def rows_and_moves(scenario, options, levels, price_crb, price_rrb):
    """At the table's rows ``levels`` (R, S), each market's first pass from the table and
    directly; and every server's moves from (``price_crb``, ``price_rrb``), off the grid,
    by the certificate's first passes and directly."""
    table = offers.offer_table(scenario, options, SETTINGS)

    def row(at):
        price = table.price[at, jnp.arange(2)]
        tabled = offers.first_pass(
            scenario, options, price, price, offers.offers_at(table, at),
            offers.paid_at(table, at),
        )  # fmt: skip
        request = offers.choose_offer(scenario, options, offers.offers_at(table, at))
        first = admission_pass(scenario, price, price, lambda *_: request, open_market(scenario))
        return tabled, first, direct(scenario, options, price, price)

    movers = jnp.arange(2)
    tables, here = grid.moves_from(scenario, options, SETTINGS, price_crb, price_rrb, table)
    passes = grid.move_passes(
        scenario, options, SETTINGS, tables, here, price_crb, price_rrb, movers
    )

    def moved(mover, level):
        crb = price_crb.at[mover].set(table.price[level, mover])
        rrb = price_rrb.at[mover].set(table.price[level, mover])
        return direct(scenario, options, crb, rrb)[:2]

    every = jnp.arange(LEVELS)
    moves = jax.vmap(lambda m: jax.vmap(lambda k: moved(m, k))(every))(movers)
    return table.first_row, jax.vmap(row)(levels), passes, moves


def test_every_first_pass_from_the_table_is_the_direct_markets(rng):
    """The table's first passes (the markets of best_response and enumerate at grid
    prices, the certificate's moves from prices off the grid) settle, sell and leave
    exactly what the direct market's first pass does; some markets are left open."""
    opened = settled = 0
    for case in range(24):
        scenario, options = binding_game(rng, case)
        levels = jnp.asarray(rng.integers(0, LEVELS, (40, 2)), jnp.int32)
        price_crb, price_rrb = (jnp.asarray(rng.uniform(0.0, 2.0, 2)) for _ in range(2))
        first_row, (tabled, first, want), passes, moves = rows_and_moves(
            scenario, options, levels, price_crb, price_rrb
        )
        where = f"case {case}"
        for got, expected in zip(jax.tree.leaves(first), jax.tree.leaves(want[2]), strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=where)
        np.testing.assert_array_equal(tabled[0], want[0], err_msg=where)
        np.testing.assert_array_equal(tabled[1], want[1], err_msg=where)
        # The certificate's moves: the mover's utility where the pass settles, and a
        # lower bound on it otherwise, as the direct pass's; above the table's first row
        # nobody buys from the mover, known without a pass.
        pass_settled, value, lower, _ = (np.asarray(x)[:, 0] for x in passes)
        direct_settled, direct_value = (np.asarray(x) for x in moves)
        mover_value = direct_value[np.arange(2), :, np.arange(2)]
        made = np.arange(LEVELS) >= int(first_row)
        np.testing.assert_array_equal(pass_settled[:, made], direct_settled[:, made], where)
        np.testing.assert_array_equal(value[:, made], mover_value[:, made], where)
        assert np.all(mover_value[:, ~made] == 0.0), where
        assert np.all(lower <= mover_value + 1e-12), where
        opened += int(np.sum(~direct_settled[:, made]))
        settled += int(np.sum(direct_settled[:, made]))
    assert opened > 0 and settled > 0, (opened, settled)


def test_enumerates_first_passes_are_the_direct_markets(rng):
    """Each profile's first pass (enumerate): known where the direct market's first pass
    settles, with its utilities; bounds around them elsewhere."""
    settings = GameSettings(leader="enumerate", price_levels=LEVELS)

    @jax.jit
    def both(scenario, options):
        table = offers.offer_table(scenario, options, settings)
        first = profiles.first_passes(scenario, options, settings, table)
        _, _, profile = profiles.profile_numbering(scenario.servers, LEVELS)
        levels = jax.vmap(profile)(jnp.arange(LEVELS**2))

        def one(at):
            price = table.price[at, jnp.arange(2)]
            return direct(scenario, options, price, price)[:2]

        return first, jax.vmap(one)(levels)

    kinds = set()
    for case in range(9):
        scenario, options = binding_game(rng, case)
        first, (settled, value) = both(scenario, options)
        known = np.asarray(first.known)
        np.testing.assert_array_equal(known, np.asarray(settled), f"case {case}")
        for bound in (first.lower, first.upper):
            np.testing.assert_array_equal(np.asarray(bound)[known], np.asarray(value)[known])
        assert np.all(np.asarray(first.lower)[~known] <= np.asarray(value)[~known] + 1e-12)
        kinds |= set(known.tolist())
    assert kinds == {True, False}, kinds
