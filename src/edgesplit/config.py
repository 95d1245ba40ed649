"""Every parameter of a random scenario, its default, unit and where the default comes from.

This is the one place defaults live: :class:`Setup` (how a random scenario is drawn)
and :class:`GameSettings` (how the game is played), each field with its unit, source
and valid range. The paper gives no numeric values beyond the Fig. 3/4 setup (20 MDs,
2 ESs, a 50 m disc, arrival rate 5 in Fig. 4), so each other default cites the
standard or datasheet it is taken from, or says why it was chosen.
``edgesplit defaults`` prints this table; the documentation's Defaults page is made from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import jax
import numpy as np

from edgesplit.errors import InputError
from edgesplit.model.dnn import (
    BUILTIN_PROFILES,
    REFERENCE_CLOCK_HZ,
    DnnModel,
    load_profile,
    model_from_profile,
)
from edgesplit.validation import FLOAT_MAX, INT32_MAX, choice, number, show, table

MAX_CYCLE_WINDOW = 1024
"""The longest ``cycle_window``. Each game holds its last ``cycle_window`` prices and
compares the new ones with all of them every round, so the window costs memory and time
in every game lane; a cycle longer than it is still caught, by the checkpoint taken at
every power of two rounds, within twice its length. A window past a thousand rounds
buys nothing but that cost (a window of 2**32 would not fit in memory)."""

MAX_PRICE_STEPS = 10**9
"""The most steps Δ a price may fall, max_price / price_step. Algorithm 1 counts a
price in int32 steps below the maximum, and its binary searches add two such counts:
2·(10**9 + 1) stays below 2**31."""

MAX_TOPOLOGIES = 2**32
"""The most topologies a sweep draws: topology t uses ``jax.random.fold_in(key, t)``,
whose data is a uint32, so a larger t would repeat topology t - 2**32."""

UTILITY_TERM_MAX = {name: largest / 4 for name, largest in FLOAT_MAX.items()}
"""The most each term of a utility may reach in each precision: a quarter of the
largest float, so that sums and differences of two terms stay finite (see
:func:`check_ranges`)."""


def _param(default, unit: str, symbol: str, source: str, static: bool = False, **bounds):
    """A documented parameter; ``bounds`` are :func:`edgesplit.validation.number` limits."""
    metadata = {
        "unit": unit,
        "symbol": symbol,
        "source": source,
        "static": static,
        "bounds": bounds,
    }
    return field(default=default, metadata=metadata)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Setup:
    """How random scenarios are drawn. Numbers may be traced arrays (swept under ``jax.jit``);
    ``models`` is static because it fixes the partition tables' shape."""

    models: tuple[str | DnnModel, ...] = _param(
        ("alexnet", "asr", "face"), "", "",
        "Section IV: each MD runs AlexNet, speech or face recognition, picked uniformly at random",
        static=True,
    )  # fmt: skip
    num_devices: int = _param(
        20, "", "M", "Fig. 3: 20 MDs", at_least=1, at_most=INT32_MAX, integer=True
    )
    num_servers: int = _param(
        2, "", "S", "Fig. 3: 2 ESs", at_least=1, at_most=INT32_MAX, integer=True
    )
    radius_m: float = _param(
        50.0, "m", "", "Section IV: MDs and ESs uniform in a disc of radius 50 m", above=0
    )
    min_distance_m: float = _param(
        10.0, "m", "",
        "3GPP TR 36.814 Table A.2.1.1.2-3: minimum UE-pico distance 10 m (path-loss law validity)",
        above=0,
    )  # fmt: skip
    mean_arrival_rate: float = _param(
        5.0, "tasks/s", "λ_m",
        "Fig. 4: average arrival rate 5 tasks per unit time (1 s)",
        above=0,
    )  # fmt: skip
    arrival_spread: float = _param(
        0.0, "", "",
        "Section IV sets 'the average task arrival rate ... for each MD': every MD's Poisson "
        "rate is the mean. A spread s > 0 draws λ_m uniformly in mean·[1 - s, 1 + s]",
        at_least=0, at_most=0.999,
    )  # fmt: skip
    cpu_hz: float = _param(
        REFERENCE_CLOCK_HZ, "cycles/s", "C_m",
        "Jetson TK1 GPU clock (852 MHz), the mobile GPU of the DjiNN/Neurosurgeon latency "
        "profiles: an MD runs each layer in its measured time (AlexNet 81.8 ms)",
        above=0,
    )  # fmt: skip
    crb_hz: float = _param(
        745e6, "cycles/s", "C_0",
        "One SMX of an NVIDIA Tesla K40 (745 MHz base clock), the server GPU of the DjiNN "
        "profiles; the TK1 GPU is one SMX of the same Kepler architecture: cycles compare 1:1",
        above=0,
    )  # fmt: skip
    crbs: int = _param(
        15, "CRBs", "", "A Tesla K40 has 15 SMX: one K40 per ES",
        at_least=1, at_most=INT32_MAX, integer=True,
    )  # fmt: skip
    rrbs: int = _param(
        100, "RRBs", "",
        "A 20 MHz LTE carrier has 100 resource blocks (3GPP TS 36.101 Table 5.6-1)",
        at_least=1, at_most=INT32_MAX, integer=True,
    )  # fmt: skip
    rrb_bandwidth_hz: float = _param(
        180e3,
        "Hz",
        "B_0",
        "One LTE resource block: 12 subcarriers × 15 kHz (3GPP TS 36.211)",
        above=0,
    )
    tx_power_dbm: float = _param(23.0, "dBm", "P_m", "LTE UE power class 3 (3GPP TS 36.101)")
    noise_density_dbm_per_hz: float = _param(-174.0, "dBm/Hz", "", "Thermal noise at 290 K")
    noise_figure_db: float = _param(
        5.0, "dB", "", "Base-station receiver noise figure (3GPP TR 36.814)", at_least=0
    )
    path_loss_intercept_db: float = _param(
        140.7, "dB", "", "3GPP TR 36.814 pico-to-UE path loss 140.7 + 36.7 log10(d/km)"
    )
    path_loss_slope_db: float = _param(36.7, "dB/decade", "", "3GPP TR 36.814, as above", above=0)
    result_delay: float = _param(
        1e-3,
        "s",
        "t^(b)",
        "One LTE subframe (1 ms): the result is a few bytes (Section II)",
        at_least=0,
    )
    reward: float = _param(
        1.0, "utility per task/s", "γ_m",
        "Normalisation: utilities are in units of γ (the paper gives no weights)",
        at_least=0,
    )  # fmt: skip
    delay_weight: float = _param(
        1.0, "utility per s", "δ_m",
        "Choice: equal weights, one second of mean delay costs one unit of utility",
        at_least=0,
    )  # fmt: skip
    payment_weight: float = _param(
        1.0,
        "utility per price unit",
        "ω_m",
        "Normalisation: prices are in utility units",
        at_least=0,
    )
    cost_crb: float = _param(
        0.05,
        "utility/s per CRB",
        "f^(c)",
        "Choice: one price step Δ, a small running cost",
        at_least=0,
    )
    cost_rrb: float = _param(
        0.05, "utility/s per RRB", "f^(r)", "Choice: equal to the CRB cost", at_least=0
    )
    max_price: float = _param(
        10.0, "utility/s per block", "max g",
        "Algorithm 1 starts where no MD offloads: 1 CRB + 1 RRB then cost 2·max g ≥ γ·λ, "
        "the whole reward, for every λ up to 20 (the top of the Fig. 3 grid)",
        above=0,
    )  # fmt: skip
    price_step: float = _param(
        0.05, "utility/s per block", "Δ", "Choice: 0.5% of the maximum price", above=0
    )

    def __post_init__(self):
        """Each field within its bounds (:func:`check_setup_value`), as in a sweep file's
        ``[setup]``; ``models`` resolved to built-in names and :class:`DnnModel` profiles.

        Fields given as arrays (the sweep engine's setups of a whole grid, traced under
        ``jax.jit``) and placeholders JAX builds while it maps a tree are left as they
        are: they come from checked setups. The rules between fields (a price step no
        larger than the maximum price, utilities that stay finite) hold for a grid of
        setups and are checked with it, by :class:`~edgesplit.sweep.spec.Sweep`."""
        if not _is_placeholder(self.models):
            object.__setattr__(self, "models", resolve_models(self.models, "models"))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["static"] or _is_placeholder(value):
                continue
            if isinstance(value, np.generic):
                value = value.item()
            object.__setattr__(self, f.name, check_setup_value(f.name, value, f.name))

    def replace(self, **changes) -> Setup:
        return dataclasses.replace(self, **changes)


def _is_placeholder(value) -> bool:
    """Whether a field holds what no user gives: an array (or a tracer, or the shape of
    one; a NumPy scalar is a number), or what JAX puts in a tree's leaves while it maps
    over it."""
    if isinstance(value, np.generic):
        return False
    return value is None or hasattr(value, "shape") or type(value) is object


def resolve_models(models, where: str) -> tuple[str | DnnModel, ...]:
    """``models`` as :class:`Setup` holds them: a non-empty tuple of built-in model names
    and :class:`DnnModel` s. A ``.csv`` or ``.json`` path is read now (relative to the
    working directory; a sweep file's paths are relative to the file) into a model
    named by the path as given, so that what the store records is its contents."""
    if isinstance(models, str) or not isinstance(models, tuple | list):
        raise InputError(where, f"must be a list of model names or profiles, got {show(models)}")
    if not models:
        raise InputError(where, "must not be empty")
    resolved = []
    for i, model in enumerate(models):
        if isinstance(model, str) and Path(model).suffix.lower() in (".csv", ".json"):
            model = read_profile_model(model, f"{where}[{i}]")
        elif isinstance(model, str):
            if model not in BUILTIN_PROFILES:
                known = ", ".join(sorted(BUILTIN_PROFILES))
                raise InputError(
                    f"{where}[{i}]",
                    f"{model!r} is neither a built-in model ({known}) nor a .csv/.json profile",
                )
        elif not isinstance(model, DnnModel):
            raise InputError(
                f"{where}[{i}]",
                f"must be a model name, profile path or DnnModel, got {show(model)}",
            )
        resolved.append(model)
    return tuple(resolved)


def read_profile_model(path: str, where: str, base_dir: Path = Path(".")) -> DnnModel:
    """The model of the profile at ``path`` (relative to ``base_dir``), read afresh,
    named ``path`` as given; errors name the cell as ``where: PATH[ROW].COLUMN``."""
    full = str(base_dir / path)
    try:
        model = model_from_profile(load_profile(full, name=path))
    except InputError as err:
        cell = path + err.field[len(full) :] if err.field.startswith(full) else err.field
        raise InputError(where, f"{cell}: {err.problem}") from None
    return model


def check_setup_value(name: str, value, where: str, precision: str = "float64"):
    """``value`` checked against :class:`Setup` field ``name``'s bounds, or an InputError:
    a count within int32, any other number within the range of ``precision``."""
    fields = {f.name: f for f in dataclasses.fields(Setup)}
    if name not in fields:
        raise InputError(where, f"unknown parameter (known: {', '.join(fields)})")
    bounds = fields[name].metadata["bounds"]
    value = number(value, where, **bounds)
    if not bounds.get("integer"):
        check_float_range(value, where, precision)
    return value


def check_float_range(value, where: str, precision: str) -> None:
    """Refuse a number beyond the finite range of ``precision`` (float32: ±3.4e38)."""
    if abs(value) > FLOAT_MAX[precision]:
        raise InputError(
            where,
            f"must be within ±{FLOAT_MAX[precision]:.8g}, the range of {precision}, "
            f"got {show(value)}",
        )


def check_ranges(worst: dict[str, tuple[float, str]], precision: str) -> None:
    """The rules between :class:`Setup` fields that keep every count within int32 and
    every utility finite in ``precision``, checked at the worst case: ``worst`` maps each
    field to its largest value (``price_step``: its smallest) and where it is given.
    With F the largest float of ``precision``:

    * blocks of a market: num_devices × (crbs + rrbs) <= 2**31 - 1, bounding the int32
      running totals of admission and the blocks a server sells;
    * price grid: max_price / price_step <= :data:`MAX_PRICE_STEPS`;
    * arrival rate: mean_arrival_rate × (1 + arrival_spread) <= F;
    * reward (eq. 10): reward × arrival rate <= F/4;
    * payment (eq. 10): payment_weight × max_price × (crbs + rrbs) <= F/4;
    * a server's utility (eq. 11): (crbs + rrbs) × max(max_price, cost_crb, cost_rrb)
      <= F/4.

    Then an option a device takes has utility γλ − δT − ω·payment in (0, γλ], a
    server's utility lies within ±F/4, and the certificate, their differences, is
    finite. An option whose delay term δT overflows has utility −∞ and is never taken.
    Each refusal names the largest factor of the product.
    """
    limit, term = FLOAT_MAX[precision], UTILITY_TERM_MAX[precision]
    value = {name: Decimal(given[0]) for name, given in worst.items()}  # exact: no overflow
    place = {name: given[1] for name, given in worst.items()}
    larger_blocks = "crbs" if value["crbs"] >= value["rrbs"] else "rrbs"
    blocks = (value["crbs"] + value["rrbs"], place[larger_blocks])
    priciest = max(("max_price", "cost_crb", "cost_rrb"), key=value.get)
    price = (value[priciest], place[priciest])
    spread = (1 + value["arrival_spread"], place["arrival_spread"])
    arrival = (value["mean_arrival_rate"] * spread[0], place["mean_arrival_rate"])
    steps = (1 / value["price_step"], place["price_step"])
    utility = f"the most a utility term may be in {precision}"
    rules = (  # what, its factors (value, where), its limit, why
        ("num_devices × (crbs + rrbs)", (worst["num_devices"], blocks), INT32_MAX,
         "the most blocks a market counts in int32"),
        ("max_price / price_step", (worst["max_price"], steps), MAX_PRICE_STEPS,
         "the most price steps Algorithm 1 counts in int32"),
        ("mean_arrival_rate × (1 + arrival_spread)", (worst["mean_arrival_rate"], spread),
         limit, f"the largest {precision}"),
        ("reward × arrival rate", (worst["reward"], arrival), term, utility),
        ("payment_weight × max_price × (crbs + rrbs)",
         (worst["payment_weight"], worst["max_price"], blocks), term, utility),
        (f"(crbs + rrbs) × {priciest}", (blocks, price), term, utility),
    )  # fmt: skip
    for what, factors, most, why in rules:
        product = math.prod(Decimal(factor[0]) for factor in factors)
        if product > most:
            where = max(factors, key=lambda factor: abs(Decimal(factor[0])))[1]
            most = most if isinstance(most, int) else f"{most:.6g}"
            raise InputError(where, f"{what} is {product:.3g}, above {most}, {why}")


def price_levels(max_price: float, price_step: float) -> int:
    """The levels of a server's price grid, max_price - k·Δ for k = 0 .. ceil(max_price / Δ)
    (:mod:`edgesplit.game.prices`), and one spare: the engine takes the quotient in the
    sweep's precision, where float32 may round it past an integer."""
    return math.ceil(max_price / price_step) + 2


def check_price_step(price_step: float, max_price: float, where: str) -> None:
    """The rule between two :class:`Setup` fields that their bounds cannot say: a price
    step no larger than the maximum price. ``where`` names the step in the file."""
    if price_step > max_price:
        raise InputError(where, f"must not exceed max_price ({max_price}), got {price_step}")


MAX_PROFILES = 250_000
"""The most price profiles ``leader = "enumerate"`` evaluates per game, K^S for the K
levels of a server's grid and S servers (not counting the spare level of
:func:`price_levels`): each game holds every profile's server utilities while it
decides (two servers of the default 201 levels: 40,401 profiles, one market each)."""

LEADERS = ("local", "best_response", "enumerate")

JOINT_MOVES = ((-1, -1), (1, 1))  # (CRB, RRB) steps below the maximum: -1 raises a price by Δ
SEPARATE_MOVES = ((-1, 0), (0, -1), (1, 0), (0, 1))


@dataclass(frozen=True)
class GameSettings:
    """How the price game is played and the best response computed.

    Static (hashable) under ``jax.jit``: changing a setting compiles a new program.
    """

    leader: str = _param(
        "local", "", "",
        "Algorithm 1 (the paper): each ES tries ±Δ. 'best_response': each ES moves to its best "
        "price on the grid; 'enumerate': every joint price profile on the grid, keeping an "
        "equilibrium (see the documentation's Leader rules page)",
    )  # fmt: skip
    grid_certificate: bool = _param(
        True, "", "",
        "Choice: every solve's certificate holds for every ES price on the grid "
        "(server_regret). false: only the ±Δ local_certificate (server_regret and "
        "certificate NaN), for sweeps that need no certificate: several times faster",
    )  # fmt: skip
    update: str = _param(
        "simultaneous", "", "",
        "Algorithm 1's listing: every ES decides against the same prices, all apply together. "
        "'sequential' follows the prose instead (ESs update in turn)",
    )  # fmt: skip
    joint_price: bool = _param(
        True, "", "g^(c) = g^(r)", "Section II: a CRB is worth the same as an RRB"
    )
    max_rounds: int = _param(
        2000, "rounds", "", "Choice: 10× the rounds needed to walk from max g to 0 in steps Δ",
        at_least=1, at_most=INT32_MAX - 1, integer=True,  # int32 rounds, and one more counted
    )  # fmt: skip
    min_gain: float = _param(
        1e-4, "utility", "",
        "Section III's 'preset threshold': a move must gain more; 1e-4 is 0.01% of a typical "
        "utility and above float32 rounding of utilities around 10",
        at_least=0,
    )  # fmt: skip
    cycle_window: int = _param(
        32, "rounds", "", "Choice: revisits within 32 rounds stop the game at once, and the "
        "cycle's states are at hand for its mean utilities (Fig. 3's longest cycle: 29 rounds); "
        "longer cycles are caught by a checkpoint at every power of two rounds and replayed",
        at_least=1, at_most=MAX_CYCLE_WINDOW, integer=True,
    )  # fmt: skip
    fast_forward: bool = _param(
        True, "", "",
        "Skip Algorithm 1's opening rounds in which nobody buys and prices only fall: "
        "found by binary search, and exact (the same game as playing them)",
    )  # fmt: skip
    best_response: str = _param(
        "exact", "", "", "Closed-form integer optimum; 'exhaustive' scans every (y, z) (the oracle)"
    )
    crb_grid: int = _param(
        0, "CRBs", "", "Exhaustive only: largest y tried (>= every ES's CRBs)",
        at_least=0, at_most=INT32_MAX, integer=True,
    )  # fmt: skip
    rrb_grid: int = _param(
        0, "RRBs", "", "Exhaustive only: largest z tried (>= every ES's RRBs)",
        at_least=0, at_most=INT32_MAX, integer=True,
    )  # fmt: skip
    price_levels: int = _param(
        0, "levels", "K", "Price levels per ES the certificate and the leader rules search "
        "(>= every ES's ceil(max_price / Δ) + 1); 0: fitted to the sweep, the scenario or "
        "the scenarios given to edgesplit.solve (the game's kernels, which build a table "
        "of offers per level, refuse 0)",
        at_least=0, at_most=INT32_MAX, integer=True,
    )  # fmt: skip

    def __post_init__(self):
        choice(self.leader, "leader", LEADERS)
        choice(self.update, "update", ("simultaneous", "sequential"))
        choice(self.best_response, "best_response", ("exact", "exhaustive"))
        for flag in ("joint_price", "fast_forward", "grid_certificate"):
            if not isinstance(getattr(self, flag), bool):
                raise InputError(flag, f"must be true or false, got {getattr(self, flag)!r}")
        for f in dataclasses.fields(self):
            if f.metadata["bounds"]:  # a count stored as int: 2000.0 from JSON becomes 2000
                object.__setattr__(
                    self, f.name, number(getattr(self, f.name), f.name, **f.metadata["bounds"])
                )
        if self.leader != "local" and self.joint_price is not True:
            raise InputError(
                "leader",
                f"{self.leader!r} needs joint_price = true: a server's best move among the "
                "K² (CRB, RRB) price pairs of its grid is not searched",
            )
        if self.crb_grid * self.rrb_grid > INT32_MAX:  # the exhaustive kernel's int32 index
            larger = "crb_grid" if self.crb_grid >= self.rrb_grid else "rrb_grid"
            raise InputError(
                larger,
                f"crb_grid × rrb_grid is {self.crb_grid * self.rrb_grid}, above {INT32_MAX}, "
                "the most purchases the exhaustive best response indexes (in int32)",
            )

    @property
    def moves(self) -> tuple[tuple[int, int], ...]:
        """Algorithm 1's trial moves in the order tried: rises before cuts."""
        return JOINT_MOVES if self.joint_price else SEPARATE_MOVES

    def replace(self, **changes) -> GameSettings:
        return dataclasses.replace(self, **changes)

    def fit_grids(self, crbs: int, rrbs: int) -> GameSettings:
        """The exhaustive best response's grids reaching the largest server capacities
        ``crbs`` and ``rrbs``: a grid left at 0 becomes that capacity, a smaller one is
        refused. Unchanged for the exact best response, which needs no grid."""
        if self.best_response != "exhaustive":
            return self
        grids = {}
        for grid, capacity, largest in (("crb_grid", "crbs", crbs), ("rrb_grid", "rrbs", rrbs)):
            given = getattr(self, grid)
            if given and given < largest:
                raise InputError(grid, f"must be >= the largest {capacity} ({largest})")
            grids[grid] = given or int(largest)
        return self.replace(**grids)

    def fit_levels(self, levels: int, servers: int) -> GameSettings:
        """The price levels reaching ``levels`` (the most of any server,
        :func:`price_levels`), for ``servers`` servers: 0 becomes ``levels``, a smaller
        number is refused, and so is an enumeration of more than :data:`MAX_PROFILES`
        profiles."""
        if self.price_levels and self.price_levels < levels:
            raise InputError("price_levels", f"must be >= the most price levels ({levels})")
        levels = self.price_levels or int(levels)
        grid = levels - 1  # the levels of the grid, without the spare
        if self.leader == "enumerate" and grid**servers > MAX_PROFILES:
            raise InputError(
                "leader",
                f"'enumerate' would evaluate {grid}^{servers} = {grid**servers:,} price "
                f"profiles per game, above {MAX_PROFILES:,} (fewer levels: a larger "
                "price_step; or leader = 'best_response')",
            )
        return self.replace(price_levels=levels)


def parse_game_settings(
    raw, where: str, *, crbs: int, rrbs: int, levels: int, servers: int,
    precision: str = "float64",
) -> GameSettings:  # fmt: skip
    """Game settings from a file's ``where`` table (a sweep file's ``[game]``, a scenario's
    ``"game"``): any :class:`GameSettings` field, the rest defaults; the exhaustive grids
    fitted to the largest capacities ``crbs`` and ``rrbs`` (:meth:`GameSettings.fit_grids`),
    the enumeration to ``levels`` price levels of ``servers`` servers
    (:meth:`GameSettings.fit_levels`); ``min_gain`` within the range of ``precision``.
    Errors name the key as ``where.KEY``."""
    table(raw, where, optional=[f.name for f in dataclasses.fields(GameSettings)])
    try:
        settings = GameSettings(**raw).fit_grids(crbs, rrbs).fit_levels(levels, servers)
        check_float_range(settings.min_gain, "min_gain", precision)
        return settings
    except InputError as err:
        raise InputError(f"{where}.{err.field}", err.problem) from None


def defaults_markdown() -> str:
    """The defaults as a Markdown table: parameter, default, unit, symbol, source."""
    lines = ["| parameter | default | unit | symbol | source |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(Setup) + dataclasses.fields(GameSettings):
        meta = f.metadata
        default = f.default
        if isinstance(default, tuple):
            default = ", ".join(default)
        elif isinstance(default, float):
            default = f"{default:g}"
        lines.append(
            f"| `{f.name}` | {default} | {meta['unit']} | {meta['symbol']} | {meta['source']} |"
        )
    return "\n".join(lines)
