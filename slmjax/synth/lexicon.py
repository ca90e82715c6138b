"""Words of the built-in story world: characters, and topics with their own strongly topical vocabulary.

Each topic owns places, objects, creatures, activities, problems and endings; a story uses one topic
and repeats its words, so that topic coherence can be learned from the spoken corpus and tested by the
topic StoryCloze set. Plain data, no logic beyond plural forms.
"""

from __future__ import annotations

import dataclasses

FEMALE = ("Lily", "Mia", "Sue", "Anna", "Emma", "Rosa", "Kate", "Lucy", "Zoe", "Ella", "Ruby", "Grace",
          "Nora", "Ivy", "Hannah", "Molly", "Daisy", "Amy", "Clara", "Jane", "Luna", "Sara")
MALE = ("Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Finn", "Ollie", "Noah", "Jake", "Dan",
        "Pete", "Luke", "Owen", "Hugo", "Eli", "Ned", "Toby", "Oscar", "Milo", "Ryan")
# (kind, who may carry it): 'f' girls' names, 'm' boys' names, 'a' any name.
KINDS = (("girl", "f"), ("boy", "m"), ("bunny", "a"), ("fox", "a"), ("bear", "a"), ("mouse", "a"),
         ("duck", "a"), ("puppy", "a"), ("kitten", "a"), ("frog", "a"), ("squirrel", "a"), ("pig", "a"),
         ("lamb", "a"), ("turtle", "a"), ("owl", "a"), ("hedgehog", "a"))
TRAITS = ("little", "kind", "brave", "curious", "happy", "shy", "clever", "cheerful", "gentle", "busy",
          "tiny", "friendly", "silly", "careful")
HAPPY = ("happy", "glad", "proud", "joyful")
SAD = ("sad", "upset", "gloomy", "sorry")

_IRREGULAR_PLURALS = {"mouse": "mice", "sheep": "sheep", "fish": "fish", "goose": "geese", "child": "children",
                      "man": "men", "woman": "women", "tooth": "teeth", "foot": "feet", "leaf": "leaves",
                      "wolf": "wolves", "knife": "knives", "loaf": "loaves", "scarf": "scarves",
                      "elf": "elves", "deer": "deer", "person": "people", "starfish": "starfish",
                      "reindeer": "reindeer", "snowman": "snowmen"}


def plural(noun: str) -> str:
    """English plural of a singular noun (irregulars from a table; "bowl of dough" -> "bowls of dough")."""
    if " of " in noun:
        head, tail = noun.split(" of ", 1)
        return f"{plural(head)} of {tail}"
    *head, last = noun.split(" ")
    if last in _IRREGULAR_PLURALS:
        p = _IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        p = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return " ".join(head + [p])


@dataclasses.dataclass(frozen=True)
class Topic:
    """One story world. Acts are (base, past) verb phrases; templates use {obj}, {place}, {pos} (his/her/its)."""

    name: str
    places: tuple[str, ...]
    objects: tuple[str, ...]
    creatures: tuple[str, ...]
    acts: tuple[tuple[str, str], ...]
    adjs: tuple[str, ...]
    problems: tuple[str, ...]   # "the {obj} ..." clause, past tense
    fixes: tuple[str, ...]      # success: what was done, past tense ("they ...")
    fails: tuple[str, ...]      # failure clause, past tense
    joys: tuple[str, ...]       # happy ending clause (base form after "to")


TOPICS = (
    Topic("sea", ("beach", "seaside", "harbor"), ("shell", "boat", "bucket", "starfish", "sandcastle"),
          ("crab", "seagull", "dolphin", "fish"),
          (("swim in the waves", "swam in the waves"), ("sail a boat", "sailed a boat"),
           ("dig in the sand", "dug in the sand"), ("look for shells", "looked for shells")),
          ("sandy", "salty", "wet", "shiny"),
          ("a big wave washed the {obj} out to sea", "the tide pulled the {obj} into the deep water",
           "a seagull carried the {obj} away over the waves"),
          ("waited for the tide to bring the {obj} back to the sand", "swam out and pulled the {obj} from the waves"),
          ("the waves took the {obj} far away across the sea", "the {obj} sank under the salty water"),
          ("play on the sandy beach with the {obj}", "splash in the waves and sail by the harbor")),
    Topic("farm", ("farm", "barn", "meadow"), ("egg", "milk pail", "basket", "pitchfork", "straw hat"),
          ("cow", "hen", "goat", "horse"),
          (("feed the hens", "fed the hens"), ("milk the cow", "milked the cow"),
           ("ride the tractor", "rode the tractor"), ("collect eggs", "collected eggs")),
          ("muddy", "fresh", "warm", "brown"),
          ("the {obj} fell into the muddy pond behind the barn", "a hungry goat knocked the {obj} into the hay",
           "the {obj} rolled out of the barn into the field"),
          ("searched the hay in the barn until they found the {obj}", "asked the farmer, who lifted the {obj} out of the mud"),
          ("the {obj} sank deep into the muddy pond", "the {obj} was lost in the tall hay of the meadow"),
          ("feed the hens and ride the tractor on the farm", "help the farmer milk the cows in the barn")),
    Topic("space", ("rocket", "moon", "space station"), ("star map", "helmet", "telescope", "moon rock", "space suit"),
          ("astronaut", "alien", "robot", "comet"),
          (("fly to the moon", "flew to the moon"), ("count the stars", "counted the stars"),
           ("float in the rocket", "floated in the rocket"), ("look at the planets", "looked at the planets")),
          ("silver", "bright", "shiny", "cosmic"),
          ("the {obj} floated out of the rocket into dark space", "a comet bumped the {obj} toward a far planet",
           "the {obj} drifted away from the moon"),
          ("flew the rocket past the stars and caught the {obj}", "used the robot arm to grab the {obj} near the moon"),
          ("the {obj} floated away among the stars forever", "the {obj} was lost behind a far planet"),
          ("fly the rocket to the moon and count the stars", "float in space and look at the bright planets")),
    Topic("garden", ("garden", "greenhouse", "flower bed"), ("seed", "watering can", "rose", "carrot", "shovel"),
          ("bee", "butterfly", "worm", "ladybug"),
          (("plant seeds", "planted seeds"), ("water the flowers", "watered the flowers"),
           ("dig in the soil", "dug in the soil"), ("pick carrots", "picked carrots")),
          ("green", "tall", "blooming", "leafy"),
          ("the {obj} was buried deep in the soil of the garden", "a rabbit took the {obj} under the hedge",
           "the {obj} dried up in the hot sun"),
          ("dug in the soil and watered the garden until the {obj} was fine",
           "planted new seeds and the {obj} grew tall in the garden"),
          ("nothing grew in the dry soil of the garden", "the {obj} was gone from the flower bed"),
          ("water the flowers and plant seeds in the garden", "pick carrots and watch the bees in the garden")),
    Topic("snow", ("hill", "frozen lake", "snowy field"), ("sled", "snowman", "mitten", "scarf", "snowball"),
          ("penguin", "reindeer", "polar bear", "snow owl"),
          (("ride a sled", "rode a sled"), ("build a snowman", "built a snowman"),
           ("skate on the ice", "skated on the ice"), ("throw snowballs", "threw snowballs")),
          ("cold", "white", "frosty", "icy"),
          ("the {obj} slid down the icy hill into a pile of snow", "the wind blew the {obj} across the frozen lake",
           "the {obj} was covered by deep cold snow"),
          ("dug through the cold snow and found the {obj}", "skated across the ice and picked up the {obj}"),
          ("the {obj} was buried under the snow all winter", "the {obj} broke through the thin ice"),
          ("ride the sled down the snowy hill", "build a snowman and skate on the frozen lake")),
    Topic("baking", ("kitchen", "bakery", "oven"), ("cake", "cookie", "pie", "bowl of dough", "muffin"),
          ("baker", "chef", "cook", "grandma"),
          (("bake cookies", "baked cookies"), ("mix the flour", "mixed the flour"),
           ("taste the sugar", "tasted the sugar"), ("make a pie", "made a pie")),
          ("sweet", "warm", "sugary", "fresh"),
          ("the {obj} burned in the hot oven", "the {obj} fell off the table onto the kitchen floor",
           "the dog licked the sugar off the {obj}"),
          ("mixed more flour and sugar and baked a new {obj} in the oven", "asked the baker, who fixed the {obj} with sweet icing"),
          ("the {obj} was black and burned from the oven", "no flour was left to bake another {obj}"),
          ("bake sweet cookies in the warm kitchen", "share the warm {obj} with the baker")),
    Topic("forest", ("forest", "woods", "old oak tree"), ("acorn", "pine cone", "mushroom", "nest", "lantern"),
          ("squirrel", "deer", "woodpecker", "badger"),
          (("climb the trees", "climbed the trees"), ("collect acorns", "collected acorns"),
           ("walk on the forest path", "walked on the forest path"), ("listen to the birds", "listened to the birds")),
          ("leafy", "mossy", "dark", "green"),
          ("the {obj} fell into a hole under the old oak tree", "a squirrel hid the {obj} high in a tree",
           "the {obj} got lost among the leaves of the forest"),
          ("climbed the oak tree and took the {obj} from the squirrel", "swept the leaves on the forest path and found the {obj}"),
          ("the {obj} was lost somewhere in the dark forest", "the {obj} stayed high in the tree out of reach"),
          ("walk in the forest and collect acorns", "climb the old oak tree and listen to the birds")),
    Topic("school", ("school", "classroom", "library"), ("book", "pencil", "backpack", "crayon", "notebook"),
          ("teacher", "classmate", "librarian", "principal"),
          (("read books", "read books"), ("write letters", "wrote letters"),
           ("learn numbers", "learned numbers"), ("draw with crayons", "drew with crayons")),
          ("new", "yellow", "neat", "thick"),
          ("the {obj} was left behind in the library", "a classmate took the {obj} by mistake",
           "the {obj} fell behind the teacher's desk"),
          ("asked the teacher, and they found the {obj} in the classroom", "looked in the library and found the {obj} on a shelf"),
          ("the {obj} was never found in the school", "the {obj} was torn and could not be used in class"),
          ("read books in the library and learn new words", "write letters and draw with crayons in class")),
    Topic("music", ("concert hall", "music room", "stage"), ("drum", "guitar", "flute", "piano", "songbook"),
          ("singer", "drummer", "band", "music teacher"),
          (("sing songs", "sang songs"), ("play the drum", "played the drum"),
           ("dance to the music", "danced to the music"), ("practice a song", "practiced a song")),
          ("loud", "sweet", "musical", "happy"),
          ("the {obj} broke right before the concert", "the {obj} was out of tune on the stage",
           "the band forgot the {obj} in the music room"),
          ("fixed the {obj} and played a sweet song on the stage", "tuned the {obj} and the band sang together"),
          ("the {obj} stayed broken and the concert was quiet", "the {obj} was too broken to play any song"),
          ("sing songs and play the drum on the stage", "dance to the music with the band")),
    Topic("castle", ("castle", "tower", "kingdom"), ("crown", "sword", "shield", "golden key", "treasure chest"),
          ("dragon", "knight", "king", "queen"),
          (("guard the castle", "guarded the castle"), ("ride a horse", "rode a horse"),
           ("climb the tower", "climbed the tower"), ("look for treasure", "looked for treasure")),
          ("golden", "royal", "old", "stone"),
          ("a dragon stole the {obj} and flew to the tower", "the {obj} was locked in the castle tower",
           "the knight dropped the {obj} into the castle moat"),
          ("climbed the tower and took the {obj} back from the dragon", "asked the brave knight, who brought the {obj} back to the king"),
          ("the dragon kept the {obj} in its cave", "the {obj} sank to the bottom of the castle moat"),
          ("guard the castle with the brave knight", "climb the tower and wave to the king")),
    Topic("party", ("party", "birthday party", "park"), ("balloon", "gift", "candle", "party hat", "birthday cake"),
          ("guest", "clown", "magician", "jester"),
          (("blow up balloons", "blew up balloons"), ("open gifts", "opened gifts"),
           ("play party games", "played party games"), ("eat birthday cake", "ate birthday cake")),
          ("red", "colorful", "big", "shiny"),
          ("the {obj} popped before the party", "the wind blew the {obj} away from the party",
           "the {obj} was forgotten at home on the birthday"),
          ("found a new {obj} and the birthday party began", "asked the clown, who made a new {obj} for the party"),
          ("the party ended without the {obj}", "the {obj} floated away into the sky"),
          ("play party games and open gifts with friends", "blow up balloons and eat birthday cake")),
    Topic("rain", ("puddle", "rainy street", "porch"), ("umbrella", "raincoat", "rain boot", "rubber duck", "rain hat"),
          ("frog", "snail", "duckling", "worm"),
          (("jump in puddles", "jumped in puddles"), ("watch the rain", "watched the rain"),
           ("float rubber ducks", "floated rubber ducks"), ("splash in the rain", "splashed in the rain")),
          ("wet", "rainy", "gray", "stormy"),
          ("the storm blew the {obj} into a deep puddle", "the {obj} floated away down the rainy street",
           "thunder scared {name}, who dropped the {obj} in the rain"),
          ("ran through the rain and caught the {obj} by the puddle", "waited under the umbrella until the storm stopped and found the {obj}"),
          ("the {obj} floated away in the stormy water", "the {obj} was soaked and torn by the rain"),
          ("jump in the puddles and splash in the rain", "float rubber ducks in the rainy street")),
    Topic("sports", ("field", "playground", "stadium"), ("ball", "bat", "goal net", "trophy", "jersey"),
          ("coach", "team", "goalkeeper", "player"),
          (("kick the ball", "kicked the ball"), ("run races", "ran races"),
           ("score goals", "scored goals"), ("play with the team", "played with the team")),
          ("fast", "strong", "sporty", "green"),
          ("the {obj} flew over the fence of the field", "the {obj} got stuck on the roof of the stadium",
           "a player kicked the {obj} into the bushes"),
          ("climbed over the fence and brought the {obj} back to the field", "asked the coach, who got the {obj} down with a ladder"),
          ("the team lost the {obj} and the game", "the {obj} stayed on the stadium roof"),
          ("kick the ball and score goals with the team", "run races on the playground with the coach")),
    Topic("pets", ("home", "yard", "pet shop"), ("bone", "leash", "toy mouse", "dog bed", "food bowl"),
          ("dog", "cat", "hamster", "parrot"),
          (("walk the dog", "walked the dog"), ("feed the cat", "fed the cat"),
           ("brush the puppy", "brushed the puppy"), ("play fetch", "played fetch")),
          ("furry", "soft", "fluffy", "cozy"),
          ("the dog buried the {obj} somewhere in the yard", "the cat hid the {obj} under the sofa at home",
           "the {obj} fell behind the fence of the yard"),
          ("dug in the yard with the dog and found the {obj}", "looked under the sofa and gave the {obj} back to the cat"),
          ("the {obj} was never found in the yard", "the dog chewed the {obj} into pieces"),
          ("walk the dog and play fetch in the yard", "feed the cat and brush the fluffy puppy")),
    Topic("train", ("train station", "railway", "train"), ("ticket", "suitcase", "whistle", "toy train", "map"),
          ("conductor", "driver", "passenger", "porter"),
          (("ride the train", "rode the train"), ("wave at the trains", "waved at the trains"),
           ("blow the whistle", "blew the whistle"), ("watch the tracks", "watched the tracks")),
          ("fast", "long", "busy", "blue"),
          ("the {obj} was left on the seat of the train", "the {obj} fell onto the railway tracks",
           "the conductor took the {obj} by mistake at the station"),
          ("asked the conductor, who found the {obj} on the train", "waited at the station until the driver brought back the {obj}"),
          ("the train left the station with the {obj}", "the {obj} was lost somewhere on the long railway"),
          ("ride the fast train and wave at the conductor", "blow the whistle at the busy train station")),
    Topic("art", ("art room", "studio", "gallery"), ("paintbrush", "painting", "box of paint", "easel", "clay pot"),
          ("artist", "painter", "art teacher", "sculptor"),
          (("paint pictures", "painted pictures"), ("mix colors", "mixed colors"),
           ("draw animals", "drew animals"), ("make clay pots", "made clay pots")),
          ("bright", "purple", "colorful", "messy"),
          ("the {obj} was smudged with wet paint", "a cat knocked the {obj} off the easel",
           "the {obj} was left in the rain outside the studio"),
          ("mixed new colors and painted the {obj} again", "asked the art teacher, who fixed the {obj} in the studio"),
          ("the {obj} was ruined with messy paint", "the {obj} broke into pieces on the studio floor"),
          ("paint bright pictures in the studio", "mix colors and show the painting in the gallery")),
)

TOPIC_NAMES = tuple(t.name for t in TOPICS)
