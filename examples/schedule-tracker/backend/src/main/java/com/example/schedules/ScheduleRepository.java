package com.example.schedules;

import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.util.List;
import java.util.Optional;
import org.springframework.jdbc.core.simple.JdbcClient;
import org.springframework.stereotype.Repository;

/** Plain SQL over the table created by the Flyway migrations. */
@Repository
public class ScheduleRepository {

  private static final String COLUMNS =
      "id, title, description, starts_at, created_at, confirmed, events";

  private final JdbcClient jdbc;

  public ScheduleRepository(JdbcClient jdbc) {
    this.jdbc = jdbc;
  }

  public Schedule insert(NewSchedule s) {
    return jdbc.sql(
            "INSERT INTO schedules (title, description, starts_at) VALUES (:title, :description,"
                + " :startsAt) RETURNING " + COLUMNS)
        .param("title", s.title())
        .param("description", s.description())
        .param("startsAt", Timestamp.from(s.startsAt()))
        .query(ScheduleRepository::map)
        .single();
  }

  public List<Schedule> findAll() {
    return jdbc.sql("SELECT " + COLUMNS + " FROM schedules ORDER BY starts_at, id")
        .query(ScheduleRepository::map)
        .list();
  }

  public Optional<Schedule> findById(long id) {
    return jdbc.sql("SELECT " + COLUMNS + " FROM schedules WHERE id = :id")
        .param("id", id)
        .query(ScheduleRepository::map)
        .optional();
  }

  /** Records that the schedule's event made the round trip through the broker. */
  public boolean confirm(long id) {
    return jdbc.sql("UPDATE schedules SET confirmed = TRUE, events = events + 1 WHERE id = :id")
            .param("id", id)
            .update()
        == 1;
  }

  private static Schedule map(ResultSet rs, int row) throws SQLException {
    return new Schedule(
        rs.getLong("id"),
        rs.getString("title"),
        rs.getString("description"),
        rs.getTimestamp("starts_at").toInstant(),
        rs.getTimestamp("created_at").toInstant(),
        rs.getBoolean("confirmed"),
        rs.getInt("events"));
  }
}
