"""The workspace domain: `workspace.members`, kept equal to the identity provider's users."""
