"""Phrasings and value pools for generate.py, each split into a train pool and a test pool.

The held-out test set only uses the ``test`` templates and pools (plus the canonical names both
splits share; catalogue.py holds the aliases and synonyms of each split), so it measures
generalisation to unseen phrasings and surface forms.
Slots: {q} (the whole query, in a frame), {np} (the product phrase, in a sort wrapper),
{s} (a size), {a} {b} (amounts with their currency), {n} (a number), {thing} (something the
store does not sell), {order} (an order number). Templates are lowercase without final
punctuation; generate.py decorates them.
"""

from __future__ import annotations

T = dict[str, list[str]]


def _t(train: list[str], test: list[str]) -> T:
    return {"train": train, "test": test}


# Data tables, one entry per line: kept out of the formatter's layout.
# fmt: off
TEMPLATES: dict[str, T] = {
    # frames around a whole query
    "frame": _t(["{q}", "{q}", "{q}", "show me {q}", "looking for {q}", "i'm looking for {q}", "i need {q}",
                 "find me {q}", "search {q}", "do you have {q}", "i want to buy {q}", "any {q}",
                 "can you find {q}", "got any {q}", "search for {q}", "i want {q}"],
                ["{q}", "{q}", "i'd like to see {q}", "help me find {q}", "on the hunt for {q}", "browse {q}",
                 "where can i get {q}", "{q} please", "need {q}", "do you sell {q}", "what do you have in {q}"]),
    # sort wrappers around the product phrase; the key is the sort value
    "price_asc": _t(["cheapest {np}", "cheap {np}", "{np} sorted by price low to high", "{np}, lowest price first",
                     "{np} cheapest first", "affordable {np}"],
                    ["{np} from cheapest to most expensive", "lowest priced {np}", "{np}, price ascending",
                     "bargain {np}"]),
    "price_desc": _t(["most expensive {np}", "premium {np}", "{np} sorted by price high to low",
                      "{np}, highest price first", "luxury {np}"],
                     ["priciest {np}", "high end {np}", "{np}, price descending", "{np} most expensive first"]),
    "rating": _t(["best rated {np}", "top rated {np}", "{np} with the best reviews", "highest rated {np}",
                  "{np} sorted by rating", "best {np}"],
                 ["best reviewed {np}", "{np} ranked by customer rating", "highly rated {np}",
                  "{np}, best ratings first"]),
    "newest": _t(["newest {np}", "latest {np}", "{np}, newest first", "new arrivals in {np}",
                  "{np} sorted by newest"],
                 ["most recent {np}", "{np} sorted by release date", "{np}, latest arrivals first",
                  "just released {np}"]),
    # brand placement: before the product phrase or after it
    "brand_pre": _t(["{brand} {np}"], ["{brand} {np}"]),
    "brand_post": _t(["{np} by {brand}", "{np} from {brand}"], ["{np} made by {brand}", "{np} of the brand {brand}"]),
    # price phrases; the key's suffix is the rule
    "price_max": _t(["under {a}", "below {a}", "less than {a}", "for less than {a}", "up to {a}", "max {a}",
                     "{a} or less", "cheaper than {a}"],
                    ["no more than {a}", "{a} max", "at most {a}", "not over {a}", "{a} tops",
                     "on a budget of {a}"]),
    "price_min": _t(["over {a}", "above {a}", "more than {a}", "at least {a}", "{a} or more"],
                    ["starting at {a}", "{a} and up", "{a}+", "minimum {a}"]),
    "price_range": _t(["between {a} and {b}", "from {a} to {b}", "{a}-{b}", "{a} to {b}"],
                      ["in the {a} to {b} range", "somewhere between {a} and {b}", "priced {a}-{b}"]),
    "price_around": _t(["around {a}", "about {a}", "roughly {a}"],
                       ["approximately {a}", "{a} or so", "in the region of {a}", "close to {a}"]),
    # sizes, by size family; bed sizes go before the product, the others after it
    "size_eu_shoe": _t(["size {s}", "in size {s}", "size eu {s}", "eu {s}"], ["in a {s}", "eu size {s}", "in {s}"]),
    "size_letter": _t(["size {s}", "in size {s}", "in {s}"], ["in a {s}", "sized {s}", "size {s}"]),
    "size_frame": _t(["size {s}", "in size {s}", "{s} frame"], ["with a {s} frame", "frame size {s}"]),
    "size_bed": _t(["{s} size", "{s}"], ["{s}-sized", "{s} sized"]),
    # someone asking about a product the store does not sell
    "unsupported": _t(["{thing}", "show me {thing}", "do you have {thing}", "i need {thing}", "{thing} under {n}"],
                      ["looking for {thing}", "any {thing} in stock", "{thing} for less than {n}"]),
}

# Amount formats by currency: "format|CODE"; {n} is the number as written.
CURRENCY: T = _t(
    ["€{n}|EUR", "{n} euros|EUR", "{n} eur|EUR", "{n}€|EUR",
     "${n}|USD", "{n} dollars|USD", "{n} bucks|USD", "{n} usd|USD",
     "£{n}|GBP", "{n} pounds|GBP", "{n} quid|GBP", "{n} gbp|GBP"],
    ["{n} euro|EUR", "EUR {n}|EUR", "€ {n}|EUR",
     "USD {n}|USD", "{n} us dollars|USD", "us${n}|USD",
     "GBP {n}|GBP", "{n} pounds sterling|GBP", "{n} quid|GBP"],
)

# Numbers in words, test split only ("a hundred quid").
NUMBER_WORDS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 80: "eighty",
                100: "a hundred", 150: "a hundred and fifty", 200: "two hundred", 300: "three hundred",
                500: "five hundred", 1000: "a grand", 2000: "two grand"}

UTTERANCES: dict[str, T] = {
    "chit_chat": _t(["hi", "hello there", "thanks!", "thank you so much", "you're great", "good morning",
                     "what's your name", "tell me a joke", "how are you today", "lol ok", "bye",
                     "nice, cheers", "who made you", "are you a robot"],
                    ["hey, how's it going", "ok thanks a lot", "have a nice day", "you're very helpful",
                     "what can you do", "haha that's funny", "good evening", "see you later"]),
    "order_status": _t(["where is my order", "track order {order}", "has my parcel shipped yet",
                        "when will my order {order} arrive", "my package hasn't arrived",
                        "what's the status of order {order}", "is my delivery coming today",
                        "where are the {cat} i ordered", "order {order} still not here"],
                       ["can you check on order {order}", "when does my parcel get here",
                        "tracking number for my last order", "the {cat} i bought haven't been delivered",
                        "is order {order} on its way"]),
    "customer_service": _t(["i want to return my {cat}", "how do i get a refund", "my discount code doesn't work",
                            "change my delivery address", "i need to talk to a human", "cancel my order",
                            "the {cat} i got are broken", "how do i reset my password", "what's your returns policy",
                            "can i exchange for a different size", "my payment failed"],
                           ["speak to an agent please", "i was charged twice", "how long do refunds take",
                            "i'd like to send back the {cat} i bought", "update my email address",
                            "do you price match", "my account is locked"]),
    "unsupported_ask": _t(["book me a flight to paris", "what's the weather tomorrow", "order a pizza",
                           "sell my old phone for me", "play some music"],
                          ["call a taxi for me", "translate this into french", "find me a plumber"]),
}

# Things the store does not sell ({thing} of the unsupported templates).
THINGS: T = _t(["car tyres", "dog food", "fresh strawberries", "concert tickets", "lawn mowers", "baby strollers",
                "wine glasses", "printer ink", "fishing rods", "board games", "guitar strings", "garden hoses",
                "paint brushes", "kitchen knives"],
               ["motorbike helmets", "cat litter", "aquarium pumps", "golf clubs", "wedding rings",
                "lottery tickets", "diapers"])

PREFIX: T = _t(["hi, ", "hey ", "hello, ", "um ", "ok so ", "please "], ["hiya, ", "quick one: ", "yo "])
SUFFIX: T = _t([" please", " thanks", " pls", " asap"], [" thank you", " if you have any", " cheers"])
# fmt: on
