"""Word lists for the sample generator: the category tree, product nouns and text templates.
Names and streets come from Faker's provider lists (sampled with numpy, not per call)."""

from __future__ import annotations

# leaf categories ("Top > Leaf"), base price, product nouns
CATEGORIES: list[tuple[str, float, tuple[str, ...]]] = [
    ("Books > Fiction", 14, ("Novel", "Thriller", "Short Stories", "Saga")),
    ("Books > Cooking", 24, ("Cookbook", "Baking Guide", "Grill Book")),
    ("Books > Travel Guides", 19, ("City Guide", "Road Atlas", "Hiking Guide")),
    ("Electronics > Audio", 89, ("Headphones", "Speaker", "Earbuds", "Soundbar")),
    ("Electronics > Phones", 399, ("Smartphone", "Phone Case", "Charger")),
    ("Electronics > Computers", 799, ("Laptop", "Tablet", "Monitor", "Keyboard")),
    ("Fashion > Women", 49, ("Dress", "Blouse", "Cardigan", "Scarf")),
    ("Fashion > Men", 45, ("Shirt", "Chinos", "Sweater", "Jacket")),
    ("Fashion > Shoes", 79, ("Sneakers", "Boots", "Loafers", "Sandals")),
    ("Home & Garden > Kitchen", 39, ("Knife Set", "Pan", "Kettle", "Blender")),
    ("Home & Garden > Garden", 29, ("Hose", "Planter", "Pruner", "Seed Kit")),
    ("Home & Garden > Decor", 35, ("Lamp", "Cushion", "Vase", "Frame")),
    ("Toys & Kids > Toys", 25, ("Puzzle", "Building Set", "Doll", "Board Game")),
    ("Toys & Kids > Kids Clothing", 22, ("Kids Hoodie", "Kids Jeans", "Pyjamas")),
    ("Toys & Kids > School", 15, ("Backpack", "Pencil Case", "Lunch Box")),
    ("Sports & Outdoors > Running", 69, ("Running Shoes", "Running Vest", "Sports Watch")),
    ("Sports & Outdoors > Fishing", 59, ("Fly Rod", "Reel", "Fly Box", "Waders", "Tackle Bag")),
    ("Sports & Outdoors > Camping", 89, ("Tent", "Sleeping Bag", "Camp Stove", "Headlamp")),
    ("Beauty > Skincare", 27, ("Moisturiser", "Serum", "Cleanser", "Sunscreen")),
    ("Beauty > Makeup", 21, ("Lipstick", "Mascara", "Palette")),
    ("Baby > Nursery", 99, ("Crib", "Baby Monitor", "Changing Mat")),
    ("Baby > Feeding", 19, ("Bottle Set", "High Chair", "Bibs")),
    ("Pets > Dogs", 29, ("Dog Bed", "Leash", "Dog Food", "Chew Toy")),
    ("Pets > Cats", 24, ("Cat Tree", "Litter Box", "Cat Food")),
    ("Travel > Luggage", 129, ("Suitcase", "Carry-on", "Duffel")),
    ("Travel > Accessories", 19, ("Travel Pillow", "Adapter", "Packing Cubes")),
]

ADJECTIVES = (
    "Classic",
    "Pro",
    "Eco",
    "Deluxe",
    "Essential",
    "Urban",
    "Alpine",
    "Coastal",
    "Everyday",
    "Premium",
    "Lite",
    "Heritage",
)

# life events: (kind, leaf category their tastes move to)
LIFE_EVENTS: list[tuple[str, str]] = [
    ("retired, took up fly fishing", "Sports & Outdoors > Fishing"),
    ("children left home", "Travel > Luggage"),
    ("new baby", "Baby > Nursery"),
    ("adopted a dog", "Pets > Dogs"),
    ("moved house", "Home & Garden > Decor"),
    ("started running", "Sports & Outdoors > Running"),
]

EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "aol.com",
    "proton.me",
    "comcast.net",
)
EMAIL_DOMAIN_WEIGHTS = (0.42, 0.14, 0.12, 0.1, 0.1, 0.04, 0.04, 0.04)
AREA_CODES = ("212", "312", "415", "503", "617", "702", "713", "808", "917", "206", "305", "404")
STREET_SUFFIX_ABBR = {
    "Street": "St",
    "Avenue": "Ave",
    "Road": "Rd",
    "Lane": "Ln",
    "Drive": "Dr",
    "Court": "Ct",
    "Place": "Pl",
    "Boulevard": "Blvd",
}
SEARCH_TERMS = {
    "Fishing": ("fly rod", "waders", "trout flies", "fishing reel"),
    "Running": ("running shoes", "gps watch", "trail shoes"),
    "Baby": ("baby monitor", "crib", "stroller"),
    "Dogs": ("dog bed", "dog food", "leash"),
}

POSITIVE = (
    "Love my new {p} from @shopone! Best purchase this year.",
    "Great service, the {p} arrived early and works perfectly.",
    "Really happy with the {p}. Will buy again!",
    "Five stars for the {p}, excellent quality.",
    "The support team sorted my order in minutes, thank you!",
)
NEGATIVE = (
    "Terrible experience, my {p} arrived broken and nobody answers.",
    "Still waiting for a refund on the {p}. Very disappointed.",
    "The {p} stopped working after a week. Awful quality.",
    "Worst customer service ever, cancelled my order for the {p}.",
    "Overpriced and late. Not ordering the {p} again.",
)
NEUTRAL = (
    "Does anyone know if the {p} comes in other colours?",
    "Ordered the {p}, let's see how it goes.",
    "Is the {p} compatible with last year's model?",
)

# planted item-to-item associations (group leverage), with their true confidence:
# (kind, antecedents, consequent, confidence, rate), products as (leaf category, name).
# "basket": in ``rate`` of orders the antecedents are bought together, and the consequent in
# the same order with probability ``confidence``. "sequence": ``rate`` of the people with two
# or more orders buy the antecedent in their first order, and the consequent in a later order
# with probability ``confidence``. The generator renames the least popular products of the
# leaf categories to these names; a consequent (and a single antecedent) is bought only
# through its bundle, while the antecedents of a two-item bundle also sell on their own.
BUNDLES: list[tuple[str, tuple[tuple[str, str], ...], tuple[str, str], float, float]] = [
    (
        "basket",
        (("Books > Fiction", "Moneyball"), ("Home & Garden > Decor", "Red Sox Banner")),
        ("Toys & Kids > Toys", "Red Sox Mr. Potato Head"),
        0.82,
        0.006,
    ),
    (
        "basket",
        (
            ("Sports & Outdoors > Camping", "Summit Tent"),
            ("Sports & Outdoors > Camping", "Summit Sleeping Bag"),
        ),
        ("Sports & Outdoors > Camping", "Summit Camp Stove"),
        0.6,
        0.006,
    ),
    (
        "basket",
        (("Electronics > Phones", "Pixel Smartphone"),),
        ("Electronics > Phones", "Pixel Screen Protector"),
        0.7,
        0.006,
    ),
    (
        "sequence",
        (("Sports & Outdoors > Fishing", "Starter Fly Rod"),),
        ("Sports & Outdoors > Fishing", "Fly Tying Kit"),
        0.5,
        0.03,
    ),
    (
        "sequence",
        (("Beauty > Skincare", "Retinol Serum Trial Size"),),
        ("Beauty > Skincare", "Retinol Serum Full Size"),
        0.6,
        0.03,
    ),
]
