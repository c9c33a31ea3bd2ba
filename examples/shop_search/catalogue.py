"""The product catalogue of the shop_search example: taxonomy, brands, attributes, products.

This file is the catalogue's single source of truth. ``build_db(path)`` writes it to SQLite for
the helper tools (tools.py), and generate.py computes its gold calls from the same data, so
the gold always agrees with what the helpers return. The taxonomy has 6 departments and 25
leaf categories; each leaf names the brands that sell it, its size family and the colours,
materials and features its products come in. Products (price in EUR, sizes, colours, a
material, features, rating, release date) are drawn from a fixed seed, so the catalogue is the
same on every machine. ``test_aliases`` (and ``test`` synonyms) exist in the catalogue, so the
helpers know them, but only the held-out test split of generate.py uses them.

    python examples/shop_search/catalogue.py /tmp/catalogue.sqlite   # write a copy
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import sys
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

SORTS = ("relevance", "price_asc", "price_desc", "rating", "newest")
ATTRIBUTES = ("size", "color", "material", "feature")
DEFAULT_CURRENCY = "EUR"
AROUND = 0.10  # "around X" is X - 10% .. X + 10% (the teacher prompt says the same)


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    department: str
    sizes: str | None  # size family, see SIZES
    colors: tuple[str, ...]
    materials: tuple[str, ...]
    features: tuple[str, ...]
    price: tuple[int, int]  # EUR range of its products
    aliases: tuple[str, ...] = ()
    test_aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Brand:
    id: str
    name: str
    categories: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    test_aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Value:
    """An attribute value with the other words people use for it (``test`` ones held out)."""

    value: str
    also: tuple[str, ...] = ()
    test: tuple[str, ...] = ()


@dataclass(frozen=True)
class Currency:
    code: str
    symbol: str
    words: tuple[str, ...]
    eur_per_unit: float


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    brand: str
    price: float
    currency: str
    sizes: tuple[str, ...]
    colors: tuple[str, ...]
    material: str
    features: tuple[str, ...]
    rating: float
    released: str


# Data tables, one entry per line: kept out of the formatter's layout.
# fmt: off
SHOE = ("black", "white", "grey", "blue", "navy", "red", "green", "pink", "brown")
CLOTH = ("black", "white", "grey", "blue", "navy", "red", "green", "pink", "beige", "yellow", "purple")
TECH = ("black", "white", "silver", "grey", "blue", "gold", "pink")
HOME = ("black", "white", "grey", "beige", "brown", "green", "blue", "yellow")
GEAR = ("black", "blue", "green", "orange", "red", "grey", "purple", "yellow")

CATEGORIES = (
    # shoes
    Category("running_shoes", "Running shoes", "shoes", "eu_shoe", SHOE, ("mesh", "knit", "synthetic"),
             ("trail", "waterproof", "wide fit"), (50, 200), ("runners", "jogging shoes"), ("shoes for running",)),
    Category("hiking_boots", "Hiking boots", "shoes", "eu_shoe", SHOE, ("leather", "suede", "synthetic"),
             ("waterproof", "lightweight"), (70, 260), ("walking boots", "trekking boots"), ("mountain boots",)),
    Category("sneakers", "Sneakers", "shoes", "eu_shoe", SHOE, ("canvas", "leather", "suede", "knit"),
             ("high top", "vegan"), (40, 180), ("trainers", "casual shoes"), ("kicks",)),
    Category("sandals", "Sandals", "shoes", "eu_shoe", SHOE, ("leather", "rubber", "cork"),
             ("vegan", "waterproof"), (20, 120), ("flip flops", "sliders"), ("slides",)),
    Category("dress_shoes", "Dress shoes", "shoes", "eu_shoe", SHOE, ("leather", "suede"),
             ("slip on", "wide fit"), (60, 300), ("formal shoes", "oxfords"), ("office shoes",)),
    # clothing
    Category("jackets", "Jackets", "clothing", "letter", CLOTH, ("down", "fleece", "polyester", "leather", "denim"),
             ("waterproof", "hooded", "packable"), (40, 400), ("coats", "parkas"), ("outerwear",)),
    Category("jeans", "Jeans", "clothing", "letter", CLOTH, ("denim",),
             ("slim fit", "stretch", "high waist"), (30, 150), (), ("denims",)),
    Category("t_shirts", "T-shirts", "clothing", "letter", CLOTH, ("cotton", "linen", "polyester"),
             ("organic", "v neck", "oversized"), (8, 60), ("tees", "t shirts"), ("tee shirts",)),
    Category("dresses", "Dresses", "clothing", "letter", CLOTH, ("cotton", "linen", "silk", "polyester"),
             ("maxi", "wrap", "sleeveless"), (25, 250), ("gowns",), ("frocks",)),
    Category("sweaters", "Sweaters", "clothing", "letter", CLOTH, ("wool", "cashmere", "cotton", "fleece"),
             ("turtleneck", "crew neck"), (25, 300), ("jumpers", "pullovers"), ("knitwear",)),
    # electronics
    Category("headphones", "Headphones", "electronics", None, TECH, ("plastic", "aluminium", "leather"),
             ("wireless", "noise cancelling", "over ear"), (20, 450), ("earphones", "earbuds"), ("headset",)),
    Category("smartphones", "Smartphones", "electronics", None, TECH, ("aluminium", "glass", "plastic"),
             ("5g", "dual sim"), (150, 1500), ("phones", "mobile phones"), ("cell phones", "handsets")),
    Category("laptops", "Laptops", "electronics", None, TECH, ("aluminium", "plastic", "carbon"),
             ("gaming", "touchscreen", "2 in 1"), (300, 3000), ("notebooks", "notebook computers"), ("laptop computers",)),
    Category("smartwatches", "Smartwatches", "electronics", None, TECH, ("aluminium", "steel", "plastic", "titanium"),
             ("gps", "lte"), (80, 900), ("smart watches", "fitness watches"), ("wearables",)),
    Category("tablets", "Tablets", "electronics", None, TECH, ("aluminium", "plastic"),
             ("5g", "stylus"), (100, 1400), ("tablet computers",), ("tablet pcs",)),
    Category("cameras", "Cameras", "electronics", None, ("black", "silver", "grey"), ("plastic", "magnesium"),
             ("4k", "waterproof"), (150, 3500), ("digital cameras", "dslrs"), ("mirrorless cameras",)),
    # home
    Category("sofas", "Sofas", "home", None, HOME, ("leather", "velvet", "linen", "fabric"),
             ("corner", "recliner", "modular"), (300, 3000), ("couches", "settees"), ("loveseats",)),
    Category("mattresses", "Mattresses", "home", "bed", ("white", "grey"), ("foam", "latex", "pocket spring"),
             ("hybrid", "orthopedic"), (150, 1800), (), ("bed mattresses",)),
    Category("lamps", "Lamps", "home", None, HOME, ("metal", "wood", "glass", "ceramic"),
             ("dimmable", "smart"), (15, 400), ("floor lamps", "table lamps"), ("reading lights",)),
    Category("coffee_machines", "Coffee machines", "home", None, ("black", "silver", "white", "red"), ("steel", "plastic"),
             ("bean to cup", "milk frother"), (60, 1500), ("espresso machines", "coffee makers"), ("coffee brewers",)),
    Category("vacuum_cleaners", "Vacuum cleaners", "home", None, ("black", "grey", "purple", "red", "white"), ("plastic",),
             ("cordless", "robot", "bagless"), (80, 900), ("vacuums", "hoovers"), ("vacs",)),
    # sports
    Category("yoga_mats", "Yoga mats", "sports", None, GEAR, ("rubber", "cork", "foam"),
             ("non slip", "extra thick"), (15, 130), ("exercise mats", "fitness mats"), ("pilates mats",)),
    Category("bicycles", "Bicycles", "sports", "frame", GEAR, ("aluminium", "carbon", "steel"),
             ("electric", "folding"), (250, 5000), ("bikes", "cycles"), ("push bikes",)),
    Category("tents", "Tents", "sports", None, GEAR, ("nylon", "polyester", "canvas"),
             ("2 person", "4 person", "pop up"), (40, 700), ("camping tents",), ("backpacking tents",)),
    # bags
    Category("backpacks", "Backpacks", "bags", None, GEAR + ("brown",), ("nylon", "canvas", "leather", "polyester"),
             ("waterproof", "anti theft"), (20, 250), ("rucksacks", "daypacks"), ("knapsacks",)),
)

BRANDS = (
    # shoes
    Brand("nike", "Nike", ("running_shoes", "sneakers", "t_shirts", "jackets", "backpacks")),
    Brand("adidas", "Adidas", ("running_shoes", "sneakers", "t_shirts", "sandals")),
    Brand("asics", "Asics", ("running_shoes",)),
    Brand("new_balance", "New Balance", ("running_shoes", "sneakers"), ("newbalance",), ("nb",)),
    Brand("brooks", "Brooks", ("running_shoes",)),
    Brand("hoka", "Hoka", ("running_shoes", "hiking_boots"), ("hoka one one",)),
    Brand("salomon", "Salomon", ("hiking_boots", "running_shoes")),
    Brand("merrell", "Merrell", ("hiking_boots", "sandals")),
    Brand("timberland", "Timberland", ("hiking_boots", "dress_shoes"), (), ("timbs",)),
    Brand("vans", "Vans", ("sneakers",)),
    Brand("converse", "Converse", ("sneakers",), (), ("chucks",)),
    Brand("birkenstock", "Birkenstock", ("sandals",), ("birkenstocks",)),
    Brand("teva", "Teva", ("sandals",)),
    Brand("clarks", "Clarks", ("dress_shoes", "sandals")),
    Brand("dr_martens", "Dr. Martens", ("dress_shoes",), ("dr martens",), ("doc martens",)),
    Brand("ecco", "Ecco", ("dress_shoes", "sandals")),
    # clothing
    Brand("the_north_face", "The North Face", ("jackets", "backpacks", "tents"), ("north face",), ("tnf",)),
    Brand("patagonia", "Patagonia", ("jackets", "sweaters")),
    Brand("columbia", "Columbia", ("jackets", "hiking_boots")),
    Brand("levis", "Levi's", ("jeans", "t_shirts", "jackets"), ("levis",), ("levi strauss",)),
    Brand("wrangler", "Wrangler", ("jeans",)),
    Brand("diesel", "Diesel", ("jeans",)),
    Brand("uniqlo", "Uniqlo", ("t_shirts", "sweaters", "jeans")),
    Brand("zara", "Zara", ("dresses", "jackets", "t_shirts")),
    Brand("h_and_m", "H&M", ("dresses", "t_shirts", "sweaters"), ("h and m",), ("hm",)),
    Brand("mango", "Mango", ("dresses", "sweaters")),
    Brand("ralph_lauren", "Ralph Lauren", ("sweaters", "t_shirts"), (), ("polo ralph lauren",)),
    Brand("tommy_hilfiger", "Tommy Hilfiger", ("sweaters", "jeans"), ("tommy",)),
    # electronics
    Brand("sony", "Sony", ("headphones", "cameras")),
    Brand("bose", "Bose", ("headphones",)),
    Brand("sennheiser", "Sennheiser", ("headphones",)),
    Brand("jbl", "JBL", ("headphones",)),
    Brand("apple", "Apple", ("smartphones", "laptops", "smartwatches", "tablets", "headphones")),
    Brand("samsung", "Samsung", ("smartphones", "tablets", "smartwatches")),
    Brand("google", "Google", ("smartphones",), ("google pixel",)),
    Brand("xiaomi", "Xiaomi", ("smartphones", "smartwatches", "vacuum_cleaners")),
    Brand("oneplus", "OnePlus", ("smartphones",), ("one plus",)),
    Brand("dell", "Dell", ("laptops",)),
    Brand("hp", "HP", ("laptops",), (), ("hewlett packard",)),
    Brand("lenovo", "Lenovo", ("laptops", "tablets")),
    Brand("asus", "Asus", ("laptops",)),
    Brand("garmin", "Garmin", ("smartwatches",)),
    Brand("fitbit", "Fitbit", ("smartwatches",)),
    Brand("canon", "Canon", ("cameras",)),
    Brand("nikon", "Nikon", ("cameras",)),
    Brand("fujifilm", "Fujifilm", ("cameras",), ("fuji",)),
    Brand("gopro", "GoPro", ("cameras",), ("go pro",)),
    # home
    Brand("ikea", "IKEA", ("sofas", "mattresses", "lamps")),
    Brand("west_elm", "West Elm", ("sofas", "lamps")),
    Brand("emma", "Emma", ("mattresses",)),
    Brand("tempur", "Tempur", ("mattresses",), ("tempurpedic",)),
    Brand("simba", "Simba", ("mattresses",)),
    Brand("philips", "Philips", ("lamps", "coffee_machines")),
    Brand("delonghi", "De'Longhi", ("coffee_machines",), ("delonghi",), ("de longhi",)),
    Brand("nespresso", "Nespresso", ("coffee_machines",)),
    Brand("breville", "Breville", ("coffee_machines",)),
    Brand("dyson", "Dyson", ("vacuum_cleaners", "lamps")),
    Brand("shark", "Shark", ("vacuum_cleaners",)),
    Brand("miele", "Miele", ("vacuum_cleaners", "coffee_machines")),
    Brand("irobot", "iRobot", ("vacuum_cleaners",), ("roomba",)),
    # sports and bags
    Brand("manduka", "Manduka", ("yoga_mats",)),
    Brand("lululemon", "Lululemon", ("yoga_mats", "t_shirts"), ("lulu",)),
    Brand("gaiam", "Gaiam", ("yoga_mats",)),
    Brand("trek", "Trek", ("bicycles",)),
    Brand("specialized", "Specialized", ("bicycles",)),
    Brand("giant", "Giant", ("bicycles",)),
    Brand("coleman", "Coleman", ("tents",)),
    Brand("msr", "MSR", ("tents",)),
    Brand("osprey", "Osprey", ("backpacks",)),
    Brand("herschel", "Herschel", ("backpacks",)),
    Brand("eastpak", "Eastpak", ("backpacks",)),
)

SIZES = {
    "eu_shoe": tuple(Value(str(n)) for n in range(36, 48)),
    "letter": (Value("XS", ("extra small",)), Value("S", ("small",)), Value("M", ("medium",)),
               Value("L", ("large",)), Value("XL", ("extra large",)), Value("XXL", ("2xl",), ("xx large",))),
    "bed": (Value("single"), Value("double"), Value("queen"), Value("king")),
    "frame": (Value("S", ("small",)), Value("M", ("medium",)), Value("L", ("large",)), Value("XL", ("extra large",))),
}

COLORS = (
    Value("black"), Value("white", (), ("ivory",)), Value("grey", ("gray",), ("charcoal",)),
    Value("silver"), Value("gold"), Value("blue"), Value("navy", ("navy blue", "dark blue")),
    Value("red", (), ("burgundy",)), Value("pink"), Value("purple"), Value("green", (), ("olive",)),
    Value("yellow"), Value("orange"), Value("brown", ("tan",)), Value("beige", (), ("cream",)),
)

MATERIALS = (
    Value("leather"), Value("suede"), Value("mesh"), Value("knit"), Value("synthetic"),
    Value("canvas"), Value("rubber"), Value("cork"), Value("cotton"), Value("linen"),
    Value("silk"), Value("wool", (), ("merino",)), Value("cashmere"), Value("denim"),
    Value("down", (), ("goose down",)), Value("fleece"), Value("polyester"), Value("nylon"),
    Value("velvet"), Value("fabric"), Value("foam", ("memory foam",)), Value("latex"),
    Value("pocket spring", ("pocket sprung",)), Value("metal"), Value("wood", ("wooden",)),
    Value("glass"), Value("ceramic"), Value("plastic"), Value("aluminium", (), ("aluminum",)),
    Value("steel", ("stainless steel",)), Value("titanium"), Value("carbon", ("carbon fibre",), ("carbon fiber",)),
    Value("magnesium"),
)

FEATURES = (
    Value("trail"), Value("waterproof", (), ("water resistant",)), Value("wide fit", ("wide-fit",)),
    Value("lightweight", ("light weight",)), Value("high top", ("high-top",), ("hi top",)),
    Value("vegan"), Value("slip on", ("slip-on",)), Value("hooded", ("with hood",)),
    Value("packable"), Value("slim fit", ("slim-fit",), ("skinny",)), Value("stretch", ("stretchy",)),
    Value("high waist", ("high-waisted",), ("high rise",)), Value("organic", ("organic cotton",)),
    Value("v neck", ("v-neck",)), Value("oversized"), Value("maxi"), Value("wrap"),
    Value("sleeveless"), Value("turtleneck", ("roll neck",), ("polo neck",)),
    Value("crew neck", ("crew-neck",)), Value("wireless", ("bluetooth",), ("wire free",)),
    Value("noise cancelling", ("noise-cancelling",), ("noise canceling", "anc")),
    Value("over ear", ("over-ear",)), Value("5g"), Value("dual sim", ("dual-sim",)),
    Value("gaming"), Value("touchscreen", ("touch screen",)), Value("2 in 1", ("2-in-1",), ("convertible",)),
    Value("gps"), Value("lte", ("4g",), ("cellular",)), Value("stylus", ("with pen",)),
    Value("4k"), Value("corner", ("l shaped",)), Value("recliner", ("reclining",)), Value("modular"),
    Value("hybrid"), Value("orthopedic", ("orthopaedic",)), Value("dimmable"), Value("smart"),
    Value("bean to cup", ("bean-to-cup",)), Value("milk frother", ("with frother",), ("milk foamer",)),
    Value("cordless", (), ("battery powered",)), Value("robot", ("robotic",)), Value("bagless"),
    Value("non slip", ("non-slip",), ("anti slip",)), Value("extra thick", ("thick",)),
    Value("electric", ("e-bike",), ("pedal assist",)), Value("folding", ("foldable",)),
    Value("2 person", ("2-person", "two person"), ("2 man",)), Value("4 person", ("4-person", "four person"), ("4 man",)),
    Value("pop up", ("pop-up",)), Value("anti theft", ("anti-theft",)),
)

CURRENCIES = (
    Currency("EUR", "€", ("euro", "euros", "eur"), 1.0),
    Currency("USD", "$", ("dollar", "dollars", "usd", "bucks", "us$"), 0.92),
    Currency("GBP", "£", ("pound", "pounds", "gbp", "quid", "sterling"), 1.17),
)

MODEL_WORDS = ("Aero", "Nova", "Pulse", "Core", "Edge", "Flex", "Prime", "Terra", "Vibe", "Zen",
               "Swift", "Peak", "Luna", "Atlas", "Orbit", "Echo", "Blaze", "Drift", "Halo", "Spark")
# fmt: on

CATEGORIES_BY_ID = {c.id: c for c in CATEGORIES}
BRANDS_BY_ID = {b.id: b for b in BRANDS}
CURRENCIES_BY_CODE = {c.code: c for c in CURRENCIES}
VOCAB = {"color": COLORS, "material": MATERIALS, "feature": FEATURES}
VALUES = {kind: {v.value: v for v in values} for kind, values in VOCAB.items()}
SIZE_VALUES = tuple(dict.fromkeys(v.value for family in SIZES.values() for v in family))


def brands_of(category_id: str) -> list[Brand]:
    """Brands that sell a category, in catalogue order."""
    return [b for b in BRANDS if category_id in b.categories]


def values_of(kind: str, category_id: str) -> tuple[Value, ...]:
    """The attribute values a category's products come in (``kind``: size, color, material, feature)."""
    category = CATEGORIES_BY_ID[category_id]
    if kind == "size":
        return SIZES[category.sizes] if category.sizes else ()
    names = {"color": category.colors, "material": category.materials, "feature": category.features}
    return tuple(VALUES[kind][name] for name in names[kind])


def _price(rng: random.Random, low: int, high: int) -> float:
    raw = low * (high / low) ** rng.random()  # log-uniform: many cheap, few dear
    step = 1 if raw < 100 else 10
    return round(max(low, round(raw / step) * step) - 0.01, 2)


def _singular(name: str) -> str:
    name = name.lower()
    if name == "jeans":
        return name
    if name.endswith(("sses", "ches")):
        return name[:-2]
    return name[:-1] if name.endswith("s") else name


def _subset(rng: random.Random, values: tuple[str, ...], low: int, high: int) -> tuple[str, ...]:
    """Between ``low`` and ``high`` of ``values``, kept in catalogue order."""
    chosen = set(rng.sample(values, rng.randint(min(low, len(values)), min(high, len(values)))))
    return tuple(v for v in values if v in chosen)


def _products() -> tuple[Product, ...]:
    """Every product: 3-6 per (category, brand), drawn from a fixed seed."""
    rng = random.Random("shop_search:catalogue:1")
    out = []
    for category in CATEGORIES:
        noun = _singular(category.name)
        sizes = tuple(v.value for v in values_of("size", category.id))
        for brand in brands_of(category.id):
            for word in rng.sample(MODEL_WORDS, rng.randint(3, 6)):
                year, month, day = rng.randint(2021, 2025), rng.randint(1, 12), rng.randint(1, 28)
                out.append(
                    Product(
                        id=f"p{len(out) + 1:04d}",
                        name=f"{brand.name} {word} {noun}",
                        category=category.id,
                        brand=brand.id,
                        price=_price(rng, *category.price),
                        currency=DEFAULT_CURRENCY,
                        sizes=_subset(rng, sizes, len(sizes) // 2, len(sizes)) if sizes else (),
                        colors=_subset(rng, category.colors, 1, 3),
                        material=rng.choice(category.materials),
                        features=_subset(rng, category.features, 0, 2),
                        rating=round(rng.uniform(3.0, 5.0), 1),
                        released=f"{year}-{month:02d}-{day:02d}",
                    )
                )
    return tuple(out)


PRODUCTS = _products()


def fingerprint() -> str:
    """A hash of the catalogue; tools.py rebuilds its database when this changes."""
    payload = [
        [asdict(x) for x in (*CATEGORIES, *BRANDS, *CURRENCIES, *PRODUCTS)],
        {k: [asdict(v) for v in vs] for k, vs in {**VOCAB, **SIZES}.items()},
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE categories (category_id TEXT PRIMARY KEY, name TEXT NOT NULL,
    department TEXT NOT NULL, size_family TEXT, position INTEGER NOT NULL);
CREATE TABLE brands (brand_id TEXT PRIMARY KEY, name TEXT NOT NULL, position INTEGER NOT NULL);
CREATE TABLE brand_categories (brand_id TEXT NOT NULL REFERENCES brands(brand_id),
    category_id TEXT NOT NULL REFERENCES categories(category_id), position INTEGER NOT NULL);
CREATE TABLE aliases (kind TEXT NOT NULL, target_id TEXT NOT NULL, alias TEXT NOT NULL);
CREATE TABLE attribute_values (attribute TEXT NOT NULL, family TEXT NOT NULL, value TEXT NOT NULL,
    synonyms TEXT NOT NULL, position INTEGER NOT NULL);
CREATE TABLE currencies (code TEXT PRIMARY KEY, symbol TEXT NOT NULL, words TEXT NOT NULL,
    eur_per_unit REAL NOT NULL);
CREATE TABLE products (product_id TEXT PRIMARY KEY, name TEXT NOT NULL,
    category_id TEXT NOT NULL REFERENCES categories(category_id),
    brand_id TEXT NOT NULL REFERENCES brands(brand_id), price REAL NOT NULL,
    currency TEXT NOT NULL REFERENCES currencies(code), material TEXT NOT NULL,
    rating REAL NOT NULL, released TEXT NOT NULL);
CREATE TABLE product_attributes (product_id TEXT NOT NULL REFERENCES products(product_id),
    attribute TEXT NOT NULL, value TEXT NOT NULL);
"""


def _fill(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint(),))
    for pos, c in enumerate(CATEGORIES):
        conn.execute(
            "INSERT INTO categories VALUES (?, ?, ?, ?, ?)",
            (c.id, c.name, c.department, c.sizes, pos),
        )
        for alias in c.aliases + c.test_aliases:
            conn.execute("INSERT INTO aliases VALUES ('category', ?, ?)", (c.id, alias))
    for pos, b in enumerate(BRANDS):
        conn.execute("INSERT INTO brands VALUES (?, ?, ?)", (b.id, b.name, pos))
        for i, category_id in enumerate(b.categories):
            conn.execute("INSERT INTO brand_categories VALUES (?, ?, ?)", (b.id, category_id, i))
        for alias in b.aliases + b.test_aliases:
            conn.execute("INSERT INTO aliases VALUES ('brand', ?, ?)", (b.id, alias))
    families = [(kind, kind, values) for kind, values in VOCAB.items()]
    families += [("size", family, values) for family, values in SIZES.items()]
    for attribute, family, values in families:
        for pos, v in enumerate(values):
            conn.execute(
                "INSERT INTO attribute_values VALUES (?, ?, ?, ?, ?)",
                (attribute, family, v.value, json.dumps(list(v.also + v.test)), pos),
            )
    for c in CURRENCIES:
        conn.execute(
            "INSERT INTO currencies VALUES (?, ?, ?, ?)",
            (c.code, c.symbol, json.dumps(c.words), c.eur_per_unit),
        )
    for p in PRODUCTS:
        conn.execute(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.id,
                p.name,
                p.category,
                p.brand,
                p.price,
                p.currency,
                p.material,
                p.rating,
                p.released,
            ),
        )
        rows = [("size", s) for s in p.sizes] + [("color", c) for c in p.colors]
        rows += [("material", p.material)] + [("feature", f) for f in p.features]
        conn.executemany(
            "INSERT INTO product_attributes VALUES (?, ?, ?)", [(p.id, *row) for row in rows]
        )


def build_db(path: str | Path) -> Path:
    """Write the catalogue to a SQLite file at ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(tmp)) as conn:
            _fill(conn)
            conn.commit()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    default = Path(__file__).with_name("data") / "catalogue.sqlite"
    print(build_db(sys.argv[1] if len(sys.argv) > 1 else default))
