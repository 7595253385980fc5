"""The demo's randomization step: generate a list and randomize the demo participants."""

from randomization import lists, services


def randomize_demo_participants(rng, context) -> None:
    users = context["users"]
    lists.generate(users["unblinded_statistician"])
    for participant in context["participants"]:
        site = participant.site_code.lower()
        services.randomize(
            users[f"coordinator.{site}"], participant.participant_id, eligibility_confirmed=True
        )
