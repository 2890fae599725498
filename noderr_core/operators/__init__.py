"""The operator as a principal: wallet sign-in (EIP-4361), sessions, and self-service actions."""
