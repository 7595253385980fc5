"""Trial conduct: final disposition and protocol deviations."""
