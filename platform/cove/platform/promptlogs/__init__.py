"""Prompt logs: reading a BU's logged requests (BU admins) and applying each BU's retention."""
