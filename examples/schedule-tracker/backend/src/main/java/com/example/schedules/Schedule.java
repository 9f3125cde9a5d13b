package com.example.schedules;

import java.time.Instant;

/** A schedule as stored and as returned by the API; {@code confirmed} flips once its event came back. */
public record Schedule(
    long id,
    String title,
    String description,
    Instant startsAt,
    Instant createdAt,
    boolean confirmed,
    int events) {}
