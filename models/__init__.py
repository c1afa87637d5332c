"""Small models the book needs, produced by the course's own training code."""
