//! Engine.IO v4 + Socket.IO v5 server (work in progress).
