"""Planted secrets: one case per shape the redactor must hide, and the places they turn up.

Each `Shape` is a secret value and how it is written (`carrier`, with `{s}` for the value);
each context puts a carrier into the kind of text incidentbook handles (an alert annotation, a
log line, a Kubernetes event, a deploy description, a runbook output, a tool error). The words
around the secret (`KEEP`) must survive redaction. Values are made up for these tests; none is
a real credential.
"""

from __future__ import annotations

from dataclasses import dataclass

KEEP = "checkout-7f9c timed out after 30s"


@dataclass(frozen=True)
class Shape:
    """A secret value and the way it is written."""

    name: str
    value: str
    carrier: str = "{s}"

    def text(self) -> str:
        return self.carrier.format(s=self.value)


_RSA_BODY = ("MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi3Q7rRmTpVq8ZyGd9Xc2KjqOeP\n"
             "u4b9sX2Lw0YQvF7hJ3kN5mR8tA1cE6gH9iK2lM4nO7pQ0rS3tU6vW9xY2zA5bC8d\n"
             "Xf1Gh4Jk7Lm0Np3Qr6St9Uv2Wx5Yz8Ab1Cd4Ef7Gh0Ij3Kl6Mn9Op2Qr5St8Uv1W")

SHAPES: tuple[Shape, ...] = (
    Shape("rsa_private_key", f"-----BEGIN RSA PRIVATE KEY-----\n{_RSA_BODY}\n-----END RSA PRIVATE KEY-----"),
    Shape("openssh_private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\n"
          "AAAAMwAAAAtzc2gtZWQyNTUxOQAAACDqK3mZp8vN2xQ7wT5yR1uE4iO9aS6dF0gH3jK8lZ2c\n-----END OPENSSH PRIVATE KEY-----"),
    Shape("pkcs8_escaped_in_json", "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\\n"
          "Vq3r9XyZ2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0Ef2Gh4Ij6Kl8\\n-----END PRIVATE KEY-----",
          'key_json="{s}"'),
    Shape("slack_webhook", "https://hooks.slack.com/services/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",
          "notify {s} on failure"),
    Shape("postgres_url_password", "pg-Pa55word-2026", "dsn=postgresql://orders:{s}@pg-primary.shop.svc:5432/orders"),
    Shape("redis_url_password_no_user", "r3dis-only-pw-77", "REDIS_URL=redis://:{s}@redis-master:6379/0"),
    Shape("amqp_url_password", "rabbit-Secr3t-9", "broker amqp://svc:{s}@rabbitmq:5672/vhost unreachable"),
    Shape("db_password_env", "Db-pass-4-orders", "DB_PASSWORD={s}"),
    Shape("pgpassword_env", "pgpw-Kx82-ops", "PGPASSWORD='{s}' psql -h pg -U app"),
    Shape("token_env", "opaque-ci-token-0093", "export DEPLOY_TOKEN={s}"),
    Shape("secret_env", "hmac-signing-secret-xyz", "WEBHOOK_SIGNING_SECRET=\"{s}\""),
    Shape("key_env", "encryption-key-value-31", "ORDERS_ENCRYPTION_KEY: {s}"),
    Shape("stripe_live_key", "sk_live_51HqLmNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPq", "stripe client init key={s}"),
    Shape("stripe_restricted_key", "rk_live_4eC39HqLyjWDarjtT1zdp7dc", "using {s} for refunds"),
    Shape("google_api_key", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "maps?key={s}&q=depot"),
    Shape("gitlab_pat", "glpat-xR4kLm9PqT2vWz8YbN3c", "git clone https://oauth2:{s}@gitlab.example/shop/api.git"),
    Shape("gitlab_pat_bare", "glpat-Zq7Wm2Lp9Xr4Tv8Nb3Kc", "CI used {s} to push"),
    Shape("npm_token", "npm_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5", "//registry.npmjs.org/:_authToken={s}"),
    Shape("azure_account_key", "q8VgkHqJ0pX1b7Yk2m4N5r6T9wZ3aC5eF7hJ1kM3nP5rT7vX9zB1dF3hK5mP7rT9vX1zB3dF5hK7mP9rT1vX3zB5dQ==",
          "DefaultEndpointsProtocol=https;AccountName=shopblobs;AccountKey={s};EndpointSuffix=core.windows.net"),
    Shape("authorization_token", "ghx8d7c6b5a4f3e2d1c0", "Authorization: token {s}"),
    Shape("authorization_bearer", "ya29.a0AfH6SMBx-Opaque_Access.Token-42", "curl -H 'Authorization: Bearer {s}' api"),
    Shape("bearer_in_text", "Zm9vYmFyLWJlYXJlci0yMDI2LXRva2Vu", "upstream refused Bearer {s} (401)"),
    Shape("aws_access_key", "AKIAZ7Q2W4E6R8T0Y2U4", "s3 upload failed access_key={s} bucket=receipts"),
    Shape("aws_secret_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Lm3Np5Q", "aws_secret_access_key={s}"),
    Shape("github_token", "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngXyZ012345", "cloning with {s}"),
    Shape("slack_bot_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack auth {s} revoked"),
    Shape("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaGVja291dCJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU", "session={s}"),
    Shape("sendgrid_key", "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",
          "mailer init {s}"),
    Shape("twilio_key", "SK2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e", "sms via {s}"),
    Shape("password_json", "j50n-Pa$$-value", '{{"user": "svc", "password": "{s}"}}'),
    Shape("password_yaml", "yaml-pw-Lk29x", "  password: {s}"),
    Shape("high_entropy_assignment", "Zx8Qw2Lk9Pm4Rt7Yh3Nb6Vc1Df5Gs0", 'session_cookie_signer = "{s}"'),
    Shape("high_entropy_unnamed", "q7R2xL9mK4pW8vT3nZ6bY1cH5fJ0dG2s", "cfg.signing={s}"),
)

#: Where secrets turn up: `{line}` is replaced by a shape's carrier text.
CONTEXTS: dict[str, str] = {
    "alert_annotation": "Checkout error ratio above 5% for 10m. " + KEEP + ". Last error: {line}",
    "log_line": '{{"level":"error","msg":"' + KEEP + '","detail":"{line}"}}',
    "k8s_event": "Back-off restarting failed container (" + KEEP + "): {line}",
    "deploy_description": "rollout orders v3.16.0 by deploy-bot: " + KEEP + "\n{line}\nsee CHANGELOG",
    "runbook_output": "$ env | sort\nHOME=/app\n{line}\nPATH=/usr/bin\n" + KEEP,
    "tool_error": "query failed: parse error at line 1, col 12: {line}; " + KEEP,
    "multi_line_block": "```\n" + KEEP + "\n{line}\n```\ntrailing words stay",
}


def contexts_for(shape: Shape) -> dict[str, str]:
    """Each context's text with `shape` planted in it."""
    # JSON log lines hold escaped text: a multi-line value appears with \\n in it there.
    out = {}
    for name, template in CONTEXTS.items():
        line = shape.text()
        if name == "log_line":
            line = line.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        out[name] = template.format(line=line)
    return out


def planted_values() -> list[str]:
    """Every planted secret value, and for multi-line ones each of their body lines."""
    values = []
    for shape in SHAPES:
        values.append(shape.value)
        for part in shape.value.replace("\\n", "\n").split("\n"):
            if part and "-----" not in part:
                values.append(part)
    return values
