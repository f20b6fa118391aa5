"""Word lists for a believable small western-US community (no Faker, no network).

Everything a generated row shows comes from these tuples, so the same seed always
gives the same names. The lists are deliberately plain: common US given names
and surnames (including the Hispanic and Scandinavian surnames frequent in the
Intermountain West), grid and named streets, and the kind of businesses a town
of a few thousand utility accounts has.
"""

from __future__ import annotations

FIRST_NAMES: tuple[str, ...] = (
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas", "Charles",
    "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew", "Joshua",
    "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward", "Jason", "Jeffrey", "Ryan",
    "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott", "Brandon",
    "Benjamin", "Samuel", "Gregory", "Alexander", "Patrick", "Frank", "Raymond", "Jack", "Dennis", "Jerry",
    "Tyler", "Aaron", "Jose", "Adam", "Nathan", "Henry", "Zachary", "Douglas", "Peter", "Kyle",
    "Noah", "Ethan", "Jeremy", "Walter", "Christian", "Keith", "Roger", "Terry", "Austin", "Sean",
    "Gerald", "Carl", "Harold", "Dylan", "Arthur", "Lawrence", "Jordan", "Jesse", "Bryan", "Billy",
    "Bruce", "Gabriel", "Joe", "Logan", "Alan", "Juan", "Albert", "Willie", "Elijah", "Wayne",
    "Randy", "Vincent", "Mason", "Roy", "Ralph", "Bobby", "Russell", "Bradley", "Philip", "Eugene",
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah", "Karen",
    "Lisa", "Nancy", "Betty", "Sandra", "Margaret", "Ashley", "Kimberly", "Emily", "Donna", "Michelle",
    "Carol", "Amanda", "Melissa", "Deborah", "Stephanie", "Dorothy", "Rebecca", "Sharon", "Laura", "Cynthia",
    "Amy", "Kathleen", "Angela", "Shirley", "Brenda", "Emma", "Anna", "Pamela", "Nicole", "Samantha",
    "Katherine", "Christine", "Helen", "Debra", "Rachel", "Carolyn", "Janet", "Maria", "Catherine", "Heather",
    "Diane", "Olivia", "Julie", "Joyce", "Victoria", "Ruth", "Virginia", "Lauren", "Kelly", "Christina",
    "Joan", "Evelyn", "Judith", "Andrea", "Hannah", "Megan", "Cheryl", "Jacqueline", "Martha", "Madison",
    "Teresa", "Gloria", "Sara", "Janice", "Ann", "Kathryn", "Abigail", "Sophia", "Frances", "Jean",
    "Alice", "Judy", "Isabella", "Julia", "Grace", "Amber", "Denise", "Danielle", "Marilyn", "Beverly",
    "Charlotte", "Natalie", "Theresa", "Diana", "Brittany", "Doris", "Kayla", "Alexis", "Lori", "Marie",
    "McKay", "Brigham", "Parley", "LaRae", "DeVon", "Ammon", "Eliza", "Kjersti", "Dallin", "Brynlee",
)

MIDDLE_NAMES: tuple[str, ...] = (
    "Lee", "Ann", "Marie", "James", "Lynn", "Ray", "Jean", "Michael", "Dean", "Rose",
    "Allen", "Kay", "Wayne", "Louise", "Joseph", "Elizabeth", "Scott", "Jo", "Dale", "Grace",
)

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes",
    "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper",
    "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
    "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
    "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
    "Powell", "Jenkins", "Perry", "Russell", "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes",
    "Gonzales", "Fisher", "Vasquez", "Simmons", "Romero", "Jordan", "Patterson", "Alexander", "Hamilton", "Graham",
    "Reynolds", "Griffin", "Wallace", "Moreno", "West", "Cole", "Hayes", "Bryant", "Herrera", "Gibson",
    "Ellis", "Tran", "Medina", "Aguilar", "Stevens", "Murray", "Ford", "Castro", "Marshall", "Owens",
    "Harrison", "Fernandez", "McDonald", "Woods", "Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen",
    "Freeman", "Webb", "Tucker", "Guzman", "Burns", "Crawford", "Olson", "Simpson", "Porter", "Hunter",
    "Larsen", "Christensen", "Jensen", "Hansen", "Nielsen", "Sorensen", "Petersen", "Madsen", "Rasmussen", "Nilsson",
    "Young", "Bingham", "Pratt", "Kimball", "Snow", "Cannon", "Richards", "Lyman", "Cluff", "Tanner",
    "Begay", "Yazzie", "Tsosie", "Benally", "Etsitty", "Valdez", "Archuleta", "Trujillo", "Montoya", "Baca",
    "O'Brien", "McKenzie", "St. John", "Van Dyke", "De La Cruz", "Du Bois", "MacLeod", "O'Neil", "Le Blanc", "Mc Bride",
)

NAMED_STREETS: tuple[str, ...] = (
    "MAIN ST", "CENTER ST", "STATE ST", "UNIVERSITY AVE", "CANYON RD", "CANYON VIEW DR", "SAGEBRUSH LN",
    "JUNIPER DR", "PINON WAY", "ASPEN CIR", "COTTONWOOD LN", "WILLOW CREEK RD", "QUAIL RIDGE DR",
    "RIDGECREST DR", "MESA VISTA DR", "BUCKSKIN RD", "PONDEROSA DR", "MOUNTAIN VIEW DR", "SUNSET BLVD",
    "DESERT ROSE LN", "FOOTHILL BLVD", "LAKESHORE DR", "RAILROAD AVE", "MILL RD", "ORCHARD DR", "PIONEER RD",
    "HERITAGE PKWY", "RODEO DR", "SADDLEBACK DR", "BRIDLE PATH", "ELK RIDGE RD", "RED ROCK DR",
    "MAPLE ST", "ELM ST", "OAK ST", "PINE ST", "CEDAR ST", "BIRCH ST", "SPRUCE ST", "WALNUT ST",
    "1ST AVE", "2ND AVE", "3RD AVE", "4TH AVE", "5TH AVE", "6TH AVE", "7TH AVE", "8TH AVE",
    "RIVERSIDE DR", "HIGHLAND DR", "VALLEY VIEW RD", "INDUSTRIAL PARK RD", "AIRPORT RD", "FAIRGROUNDS RD",
)

GRID_DIRECTIONS: tuple[str, ...] = ("N", "S", "E", "W")

UNITS: tuple[str, ...] = ("APT 1", "APT 2", "APT 3", "APT 4", "APT 5", "APT 6", "APT 7", "APT 8",
                          "APT 101", "APT 102", "APT 201", "APT 202", "#A", "#B", "#C", "UNIT 1", "UNIT 2",
                          "UNIT 3", "STE 100", "STE 200", "LOT 12", "LOT 27", "SPC 4", "BSMT")

BUSINESS_FIRST: tuple[str, ...] = (
    "Wasatch", "Red Rock", "Canyon", "Sagebrush", "Summit", "High Desert", "Pioneer", "Mountain West",
    "Blue Sky", "Juniper", "Cottonwood", "Big Horn", "Eagle", "Frontier", "Golden Spike", "Timberline",
    "Bear River", "Silver Creek", "Desert Sun", "Aspen Grove", "Valley", "Lone Peak", "Sunrise", "Copper",
)
BUSINESS_KIND: tuple[str, ...] = (
    "Family Dental", "Auto Repair", "Veterinary Clinic", "Cafe", "Pizza", "Hardware", "Feed & Supply",
    "Car Wash", "Laundromat", "Motel", "Storage", "Credit Union", "Insurance Agency", "Chiropractic",
    "Floral", "Bakery", "Tire & Lube", "Realty", "Fitness", "Dairy", "Machine Works", "Printing",
    "Market", "Pharmacy", "Bowling Lanes", "Cinema", "Title Company", "Landscaping", "Plumbing", "Electric",
)
BUSINESS_SUFFIX: tuple[str, ...] = ("LLC", "Inc", "", "", "Co", "LLC", "Corp", "")
LANDLORD_KIND: tuple[str, ...] = ("Property Management", "Rentals", "Properties", "Investments",
                                  "Housing Partners", "Apartments")
HOA_KIND: tuple[str, ...] = ("Homeowners Assn", "HOA", "Owners Association", "Park Assn")
TRUST_KIND: tuple[str, ...] = ("Family Trust", "Living Trust", "Revocable Trust")

GOV_DEPARTMENTS: tuple[str, ...] = ("Parks Dept", "Public Works", "Fire Station", "Library", "Cemetery",
                                    "Golf Course", "Wastewater Plant", "City Hall", "Police Dept", "Pool")

OTHER_TOWNS: tuple[tuple[str, str, str], ...] = (
    ("Salt Lake City", "UT", "841"), ("Provo", "UT", "846"), ("Ogden", "UT", "844"), ("St. George", "UT", "847"),
    ("Boise", "ID", "837"), ("Idaho Falls", "ID", "834"), ("Pocatello", "ID", "832"), ("Twin Falls", "ID", "833"),
    ("Denver", "CO", "802"), ("Grand Junction", "CO", "815"), ("Colorado Springs", "CO", "809"),
    ("Reno", "NV", "895"), ("Las Vegas", "NV", "891"), ("Elko", "NV", "898"), ("Phoenix", "AZ", "850"),
    ("Flagstaff", "AZ", "860"), ("Cheyenne", "WY", "820"), ("Rock Springs", "WY", "829"),
    ("Billings", "MT", "591"), ("Bozeman", "MT", "597"), ("Albuquerque", "NM", "871"), ("Sacramento", "CA", "958"),
)

EMAIL_DOMAINS: tuple[str, ...] = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com",
                                  "comcast.net", "msn.com", "aol.com", "live.com", "protonmail.com")

CONTACT_NOTES: tuple[str, ...] = (
    "Dog in backyard - call before entering", "Prefers email contact", "Paperless billing requested",
    "Payment plan agreed, see memo", "Gate code 4411", "Meter behind fence, key at office",
    "Hard of hearing - speak clearly", "Spanish speaking", "Snowbird: away Nov-Mar", "Former council member",
    "Disputed high usage 2021, leak found", "Elderly - medical equipment on premises",
    "Do not shut off without supervisor approval", "Called about billing date change",
    "Requested large-item pickup", "Second home", "Landlord handles all billing questions",
)
EMPLOYEE_NOTE = "EMPLOYEE - PAYROLL #{n:05d}"
VENDOR_NOTE = "VENDOR 1099 - AP #{n:05d}"

# Time zone -> (state, zip prefix, phone area codes). Unknown zones fall back to Utah.
STATE_BY_TZ: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "America/Denver": ("UT", "840", ("435", "801", "385")),
    "America/Boise": ("ID", "836", ("208", "986")),
    "America/Phoenix": ("AZ", "855", ("928", "520")),
    "America/Los_Angeles": ("NV", "894", ("775", "702")),
    "America/Chicago": ("TX", "790", ("806", "432")),
}

OTHER_RECEIPT_FEES: tuple[tuple[str, int], ...] = (
    ("Dog License", 1500), ("Business License", 5000), ("Building Permit", 12500), ("Park Reservation", 3500),
    ("Impact Fee", 25000), ("Cemetery Plot", 60000), ("Parking Citation", 2500), ("Rec Program", 4500),
)
