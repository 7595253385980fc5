"""The visit forms: drinking calendar (TLFB), OCDS, CIWA-Ar, vitals and labs."""
