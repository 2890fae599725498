"""`noderr demo`: runs the four journeys end to end against a freshly started local stack."""

# The model every demo journey serves (published first, leased by the nodes, lied about once).
MODEL_NAME = "iris-classifier"
