"""General English text for the forgetting measurements: retention and replay sets.

Plain encyclopedic sentences about everyday subjects, written for kubesft (no text comes
from elsewhere), which a small instruction-tuned model predicts well before fine-tuning.
Two disjoint pools: RETENTION is only ever scored (`spec.evaluation.retention`), REPLAY
is mixed into training as a `format: text` member. A paragraph is four sentences of one
pool drawn with a seeded generator, so the sets are reproducible.
"""

from __future__ import annotations

import random

RETENTION = (
    "Bread rises because yeast turns the sugars in flour into carbon dioxide.",
    "A kettle switches itself off when the water inside reaches its boiling point.",
    "Most apple trees need a cold winter before they can flower in the spring.",
    "The moon takes about a month to pass through all of its phases.",
    "Trains in many countries run on electricity taken from wires above the track.",
    "A good map shows roads, rivers and towns at a scale the reader can measure.",
    "Children usually lose their first teeth when they are around six years old.",
    "Rain forms when tiny drops of water in a cloud join together and grow heavy.",
    "Libraries lend books for a few weeks and charge a small fee for late returns.",
    "Bees carry pollen from flower to flower, which helps plants make seeds.",
    "A bicycle chain passes the force of the pedals to the back wheel.",
    "Salt has been used for thousands of years to keep meat and fish from spoiling.",
    "Many birds fly south in autumn to find food during the cold months.",
    "The heart pumps blood through the body in a steady rhythm of beats.",
    "Glass is made by melting sand at a very high temperature and letting it cool.",
    "A compass needle points north because it lines up with the earth's magnetic field.",
    "Farmers rotate their crops so that the soil does not lose the same nutrients each year.",
    "The first step of most recipes is to gather and measure every ingredient.",
    "Wool comes from sheep, which are sheared once a year in early summer.",
    "A river carries small stones and sand downstream and leaves them where it slows.",
    "Paper is usually made from wood pulp that is pressed flat and dried.",
    "Snow falls instead of rain when the air near the ground is cold enough.",
    "Most people sleep better in a room that is dark, quiet and a little cool.",
    "A bridge must be strong enough to carry its own weight and the traffic on it.",
)
REPLAY = (
    "Tea is made by pouring hot water over dried leaves and letting them steep.",
    "A lighthouse warns ships at night with a bright light that turns slowly.",
    "Tomatoes grow best in warm weather with plenty of sun and regular watering.",
    "The sun rises in the east and sets in the west because the earth turns.",
    "Buses stop at marked places along their route to let passengers on and off.",
    "A clock with hands shows the hour with the short hand and the minutes with the long one.",
    "Most cats sleep for more than half of the day and are active at dawn and dusk.",
    "Wind is air moving from places of high pressure to places of low pressure.",
    "A museum keeps old and rare objects so that visitors can learn about the past.",
    "Frogs lay their eggs in water, where the young grow as tadpoles.",
    "An umbrella keeps a person dry by letting the rain run off its curved top.",
    "Cheese is made by letting milk curdle and then pressing and aging the curds.",
    "Whales are mammals, so they must come to the surface of the sea to breathe.",
    "The lungs take in oxygen from the air and breathe out carbon dioxide.",
    "Bricks are shaped from clay and then baked in a kiln until they are hard.",
    "A thermometer measures how warm or cold something is in degrees.",
    "Gardeners add compost to their beds to make the soil richer and softer.",
    "Pasta is cooked in a large pot of salted water until it is soft but still firm.",
    "Cotton grows in fluffy white balls around the seeds of the cotton plant.",
    "Waves are made by wind blowing across the surface of the ocean.",
    "Pencils write with a core of graphite mixed with a little clay.",
    "Ice floats on water because it is lighter than the same amount of liquid water.",
    "A short walk after a meal can help the body settle and digest.",
    "Roads are often built with a slight curve so that rain drains to the sides.",
)
SENTENCES_PER_PARAGRAPH = 4


def paragraphs(pool: tuple[str, ...], count: int, seed: int) -> list[str]:
    """`count` paragraphs of SENTENCES_PER_PARAGRAPH distinct sentences of `pool`."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(pool, SENTENCES_PER_PARAGRAPH)) for _ in range(count)]
