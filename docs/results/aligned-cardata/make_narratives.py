"""Narrative personas written from real carData::WVS respondents, for the quality-filter check:
python docs/results/aligned-cardata/make_narratives.py OUT.jsonl [N] [LIE_EVERY]

Each narrative states the respondent's age, sex, country and whether they went to university;
every LIE_EVERY-th one states the other sex than the recorded attribute (a persona that
contradicts itself, which the quality filter should catch)."""

import json
import sys

from raysim.survey.cardata import load_cardata

out, n, lie_every = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100, \
    int(sys.argv[3]) if len(sys.argv) > 3 else 5
people = load_cardata().query("country == 'NOR'").head(n).reset_index(drop=True)
with open(out, "w") as f:
    for i, r in people.iterrows():
        sex = int(r["Q260"])
        stated = 3 - sex if i % lie_every == 0 else sex
        noun = {1: "man", 2: "woman"}[stated]
        school = "I have a university degree." if r["DEGREE"] == 1 else "I did not go to university."
        f.write(json.dumps({"id": i + 1, "country": "NOR", "lie": stated != sex,
                            "persona": f"I am a {r['Q262']}-year-old {noun} from Norway. {school}",
                            "Q260": sex, "Q262": int(r["Q262"]), "DEGREE": int(r["DEGREE"])}) + "\n")
print(f"wrote {len(people)} narratives to {out}")
