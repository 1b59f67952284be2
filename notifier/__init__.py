"""The notifier: email through Amazon SES (error reports, handoff mail), without storms."""
