"""Target devices as data files plus the latency model that reads them. Never imports torch."""

from edgeshrink.hardware_profiles.registry import Profile, ProfileError, list_profiles, load_profile

__all__ = ["Profile", "ProfileError", "list_profiles", "load_profile"]
