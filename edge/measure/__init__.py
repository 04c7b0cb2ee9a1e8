"""What the touchpoints achieved (issue 16): the estimates the report shows, as pure functions of counts."""
