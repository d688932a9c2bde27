"""Pipeline stages as plain functions: extract → embed → reconcile (plan, apply) → notify."""
