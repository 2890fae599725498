"""`noderr demo`: runs the four journeys end to end against a freshly started local stack."""
