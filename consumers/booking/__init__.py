"""The booking domain: desks and bookings; only active, known users can book."""
