"""What every captured form shares: site scoping, corrections with a reason, entered-in-error
marks instead of deletes, and the audit rows that let any record be rebuilt from the trail."""
