"""Query builders for generate.py: one function per category, each returning (text, gold calls).

Every search query is built from one real product of the catalogue: its category, and where the
query asks for them its brand, a colour, material, feature or size it comes in, and a price
bound it fits (in the named currency, converted at the catalogue's rates). So each gold call
finds at least that product. A ``Draft`` carries the split's random generator and records what
a query used (template ids, surface forms, the product, the price phrase) for ``meta``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from supertiny.core.task import import_file

HERE = Path(__file__).resolve().parent


def _sibling(name: str):
    """Import a file next to this one by path (this folder is not a package)."""
    return import_file(HERE / f"{name}.py", f"shop_search_{name}")


catalogue = _sibling("catalogue")
phrases = _sibling("phrases")

CAT = catalogue.CATEGORIES_BY_ID
BRAND = catalogue.BRANDS_BY_ID
SORTS = [s for s in catalogue.SORTS if s != "relevance"]
QUESTION_START = ("do ", "any ", "got ", "can ", "where ", "what ", "when ", "how ", "has ", "is ")


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def _number(value: float) -> int | float:
    value = round(value, 2)
    return int(value) if float(value).is_integer() else value


class Draft:
    """One query under construction."""

    def __init__(self, split: str, rng: random.Random):
        self.split, self.rng = split, rng
        self.templates: list[str] = []
        self.surfaces: list[str] = []
        self.product: str | None = None
        self.price_expression: str | None = None

    def choice(self, seq):
        seq = list(seq)
        return seq[self.rng.randrange(len(seq))]

    def pool(self, table: dict[str, list]) -> list:
        return table[self.split]

    def template(self, key: str) -> str:
        options = phrases.TEMPLATES[key][self.split]
        index = self.rng.randrange(len(options))
        self.templates.append(f"{key}.{self.split[:2]}{index}")
        return options[index]

    def utterance(self, key: str) -> str:
        options = phrases.UTTERANCES[key][self.split]
        index = self.rng.randrange(len(options))
        self.templates.append(f"{key}.{self.split[:2]}{index}")
        return options[index]

    def surface(self, canonical: list[str], train: tuple[str, ...], test: tuple[str, ...]) -> str:
        """A canonical name or one of this split's other names; the test split favours its own."""
        own = list(train if self.split == "train" else test)
        if self.split == "test" and own and self.rng.random() < 0.6:
            surface = self.choice(own)
        else:
            surface = self.choice(canonical + own)
        self.surfaces.append(surface)
        return surface

    def category(self, category_id: str) -> str:
        c = CAT[category_id]
        return self.surface([c.name.lower()], c.aliases, c.test_aliases)

    def brand(self, brand_id: str) -> str:
        b = BRAND[brand_id]
        return self.surface([b.name.lower()], b.aliases, b.test_aliases)

    def value(self, kind: str, value: str) -> str:
        v = catalogue.VALUES[kind][value]
        return self.surface([v.value], v.also, v.test)


# ----- the parts of a query ------------------------------------------------------------------
def _size(d: Draft, category_id: str, value: str) -> tuple[str, bool]:
    """(size phrase, goes before the product noun)."""
    family = CAT[category_id].sizes
    v = next(x for x in catalogue.SIZES[family] if x.value == value)
    template = d.template(f"size_{family}")
    words = list(v.also) + (list(v.test) if d.split == "test" else [])
    if "a {s}" in template and not value.isdigit():
        options = words or [value.lower()]
    else:
        options = [value, *words]
    surface = d.choice(options)
    d.surfaces.append(surface)
    return template.format(s=surface), family == "bed"


def _write_number(d: Draft, n: float, words_ok: bool, style: float) -> str:
    """``n`` as written: digits, "1,200", or (test split only) "1.2k" or words ("a hundred");
    ``style`` is one draw per price phrase, so both ends of a range are written alike."""
    if d.split == "test" and words_ok and n in phrases.NUMBER_WORDS and style < 0.35:
        d.surfaces.append(phrases.NUMBER_WORDS[n])
        return phrases.NUMBER_WORDS[n]
    if n >= 1000 and n % 100 == 0:
        if d.split == "test" and style < 0.35:
            return f"{n / 1000:g}k"
        if style < 0.6:
            return f"{int(n):,}"
    return f"{n:g}" if isinstance(n, int) else f"{n:.2f}"


def _step(value: float) -> int:
    return 5 if value < 50 else 10 if value < 200 else 50 if value < 1000 else 100


def price(d: Draft, product, named: bool) -> tuple[str | tuple[str, str], dict, str, str]:
    """Amount(s) as written, gold price bounds, price template and currency code for a price
    the product fits (the rules of prices.py)."""
    if named:
        fmt, code = d.choice(d.pool(phrases.CURRENCY)).split("|")
        d.surfaces.append(fmt.replace("{n}", "").strip().lower())
    else:
        fmt, code = "{n}", catalogue.DEFAULT_CURRENCY
    value = product.price / catalogue.CURRENCIES_BY_CODE[code].eur_per_unit
    step = _step(value)
    kind = d.rng.choices(("max", "min", "range", "around"), weights=(5, 2, 3, 2))[0]
    if kind == "min" and math.floor(value / step) * step <= 0:
        kind = "max"
    words_ok = fmt == "{n}" or fmt.startswith("{n} ")
    style = d.rng.random()

    def amount(n: float, with_currency: bool = True) -> str:
        written = _write_number(d, n, words_ok, style)
        return fmt.replace("{n}", written) if with_currency else written

    extra = step * d.rng.choice((0, 0, 1))
    if kind == "max":
        n = math.ceil(value / step) * step + extra
        if d.rng.random() < 0.12 and n - 0.01 >= value:
            n = n - 0.01
        n = _number(n)
        return amount(n), {"price_max": n}, d.template("price_max"), code
    if kind == "min":
        n = _number(math.floor(value / step) * step - (extra if value > 2 * step else 0))
        return amount(n), {"price_min": n}, d.template("price_min"), code
    if kind == "around":
        # the roundest amount whose ±10% window still holds the product's price
        n = next(
            _number(max(s, round(value / s) * s))
            for s in (step, max(1, step // 5), 1)
            if 0.9 * max(s, round(value / s) * s) <= value <= 1.1 * max(s, round(value / s) * s)
        )
        gold = {"price_min": _number(n * 0.9), "price_max": _number(n * 1.1)}
        return amount(n), gold, d.template("price_around"), code
    lo = _number(max(step, math.floor(value / step) * step - extra))
    hi = _number(max(lo + step, math.ceil(value / step) * step + step * d.rng.choice((0, 1))))
    suffix = fmt.startswith("{n}")
    both = d.rng.random() < 0.5
    a, b = amount(lo, not suffix or both), amount(hi, suffix or both)
    return (a, b), {"price_min": lo, "price_max": hi}, d.template("price_range"), code


def price_phrase(d: Draft, product, named: bool) -> tuple[str, dict[str, Any]]:
    """The price phrase ("under 50 quid") and its gold arguments, currency included."""
    written, gold, template, code = price(d, product, named)
    a, b = written if isinstance(written, tuple) else (written, None)
    phrase = template.format(a=a, b=b)
    d.price_expression = phrase
    return phrase, {**gold, "currency": code}


def search(
    d: Draft,
    product,
    *,
    brand: bool = False,
    attrs: tuple[str, ...] = (),
    price: str | None = None,
    sort: str | None = None,
) -> tuple[str, list[dict]]:
    """The text and gold call of a search for ``product`` with the asked-for facets.

    ``attrs``: any of feature, color, material, size; ``price``: None, "bare" or "named".
    """
    d.product = product.id
    attributes: dict[str, str] = {}
    pre, post, args = [], [], {"category": product.category}
    if brand:
        args["brand"] = product.brand
    if "feature" in attrs:
        args["query"] = d.choice(product.features)
        surface = d.value("feature", args["query"])
        (post if surface.startswith("with ") else pre).append(surface)
    if "color" in attrs:
        attributes["color"] = d.choice(product.colors)
        pre.append(d.value("color", attributes["color"]))
    if "material" in attrs:
        attributes["material"] = product.material
        pre.append(d.value("material", product.material))
    if "size" in attrs:
        attributes["size"] = d.choice(product.sizes)
        phrase, before = _size(d, product.category, attributes["size"])
        (pre if before else post).append(phrase)
    np = " ".join([*pre, d.category(product.category), *post])
    if brand:
        key = "brand_pre" if d.rng.random() < 0.6 else "brand_post"
        np = d.template(key).format(brand=d.brand(product.brand), np=np)
    if price:
        phrase, price_args = price_phrase(d, product, named=price == "named")
        np = f"{np} {phrase}"
        args.update(price_args)
    if attributes:
        args["attributes"] = attributes
    if sort:
        np = d.template(sort).format(np=np)
        args["sort"] = sort
    return d.template("frame").format(q=np), [call("search_products", **args)]


def attribute_options(product) -> list[str]:
    """The facets a product can be searched by (it has a feature, it comes in sizes)."""
    options = ["color", "material"]
    if product.features:
        options.append("feature")
    if product.sizes:
        options.append("size")
    return options


def pick_attrs(d: Draft, product, k: int) -> tuple[str, ...]:
    options = attribute_options(product)
    chosen = set(d.rng.sample(options, min(k, len(options))))
    return tuple(a for a in ("feature", "color", "material", "size") if a in chosen)


# ----- one builder per category --------------------------------------------------------------
def _product(d: Draft):
    return d.choice(catalogue.PRODUCTS)


def simple(d: Draft):
    return search(d, _product(d))


def brand(d: Draft):
    return search(d, _product(d), brand=True)


def price_range(d: Draft):
    return search(d, _product(d), price="bare")


def attributes(d: Draft):
    product = _product(d)
    return search(d, product, attrs=pick_attrs(d, product, d.choice((1, 1, 2))))


def sort(d: Draft):
    return search(d, _product(d), sort=d.choice(SORTS))


def currency(d: Draft):
    return search(d, _product(d), brand=d.rng.random() < 0.3, price="named")


def combined(d: Draft):
    product = _product(d)
    facets = set(d.rng.sample(("brand", "price", "attrs", "sort"), d.choice((3, 3, 4))))
    return search(
        d,
        product,
        brand="brand" in facets,
        attrs=pick_attrs(d, product, d.choice((1, 2))) if "attrs" in facets else (),
        price=d.choice(("bare", "named")) if "price" in facets else None,
        sort=d.choice(SORTS) if "sort" in facets else None,
    )


def not_search(d: Draft):
    reason = d.rng.choices(
        ("chit_chat", "order_status", "customer_service", "unsupported"), weights=(2, 3, 3, 3)
    )[0]
    if reason == "unsupported":
        if d.rng.random() < 0.35:
            return d.utterance("unsupported_ask"), [call("not_a_product_search", reason=reason)]
        thing = d.choice(d.pool(phrases.THINGS))
        d.surfaces.append(thing)
        n = d.choice((20, 30, 50, 100, 200))
        text = d.template("unsupported").format(thing=thing, n=n)
        return text, [call("not_a_product_search", reason=reason)]
    text = d.utterance(reason)
    if "{cat}" in text:
        text = text.replace("{cat}", d.category(_product(d).category))
    if "{order}" in text:
        number = str(d.rng.randint(10000, 999999))
        text = text.replace("{order}", d.choice((number, f"#{number}", f"no. {number}")))
    return text, [call("not_a_product_search", reason=reason)]


CATEGORIES = {
    "simple": simple,
    "brand": brand,
    "price_range": price_range,
    "attributes": attributes,
    "sort": sort,
    "combined": combined,
    "currency": currency,
    "not_search": not_search,
}
TYPO_BASES = ("simple", "brand", "attributes", "attributes", "sort")
