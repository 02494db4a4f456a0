"""What tests and benches share: servers, clients, fault injection, in-process hosts."""
