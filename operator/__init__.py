"""The Kubernetes operator: pure manifest rendering and kopf handlers for the Chain resource."""
