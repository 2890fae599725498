"""Onboarding resources: the platform settings the jobs need (SMTP, public URL, secret key)."""


from noderr_pipelines.lib.settings import SettingsBackedResource


class OnboardingSettings(SettingsBackedResource):
    """NODERR_* settings, with optional overrides (tests point SMTP at their own server).

    Empty strings mean "use NODERR_SMTP_URL / NODERR_PUBLIC_BASE_URL"; secrets always come from the
    environment at run time, never from run config.
    """

    smtp_url: str = ""
    public_base_url: str = ""
    relay_batch_size: int = 50

    def settings_overrides(self) -> dict:
        return {"smtp_url": self.smtp_url, "public_base_url": self.public_base_url}
