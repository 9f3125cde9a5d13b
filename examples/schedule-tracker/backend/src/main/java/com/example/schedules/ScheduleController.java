package com.example.schedules;

import jakarta.validation.Valid;
import java.net.URI;
import java.util.List;
import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PathVariable;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RequestMapping;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.server.ResponseStatusException;

/** The schedules resource: /api/schedules. */
@RestController
@RequestMapping("/api/schedules")
public class ScheduleController {

  private final ScheduleRepository repository;
  private final ScheduleEvents events;

  public ScheduleController(ScheduleRepository repository, ScheduleEvents events) {
    this.repository = repository;
    this.events = events;
  }

  @GetMapping
  public List<Schedule> list() {
    return repository.findAll();
  }

  @GetMapping("/{id}")
  public Schedule get(@PathVariable long id) {
    return repository
        .findById(id)
        .orElseThrow(() -> new ResponseStatusException(HttpStatus.NOT_FOUND, "no schedule " + id));
  }

  @PostMapping
  public ResponseEntity<Schedule> create(@Valid @RequestBody NewSchedule body) {
    Schedule created = repository.insert(body);
    events.published(created);
    return ResponseEntity.created(URI.create("/api/schedules/" + created.id())).body(created);
  }
}
